package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Merge combines the meta of a service's instances into the service's meta,
// since Consul has no service-level meta. Only keys that start with
// "signalbox-" are kept. For each, the value set by most instances wins;
// a tie goes to the lexicographically smallest value. Instances that do not
// set a key (or set it to an empty or blank value) do not vote, but when
// instances disagree, including when some leave the key unset, a Problem
// names the values and how many instances set each. Problems are sorted by
// key.
func Merge(instancesMeta []map[string]string) (meta map[string]string, conflicts []Problem) {
	counts := map[string]map[string]int{}
	for _, m := range instancesMeta {
		for k, v := range m {
			if !strings.HasPrefix(k, MetaPrefix) || isRoutingKey(k) || strings.TrimSpace(v) == "" {
				continue
			}
			if counts[k] == nil {
				counts[k] = map[string]int{}
			}
			counts[k][v]++
		}
	}
	meta = make(map[string]string, len(counts))
	for _, k := range sortedKeys(counts) {
		type vote struct {
			value string
			n     int
		}
		var votes []vote
		set := 0
		for v, n := range counts[k] {
			votes = append(votes, vote{v, n})
			set += n
		}
		sort.Slice(votes, func(i, j int) bool {
			if votes[i].n != votes[j].n {
				return votes[i].n > votes[j].n
			}
			return votes[i].value < votes[j].value
		})
		winner := votes[0].value
		meta[k] = winner
		unset := len(instancesMeta) - set
		if len(votes) == 1 && unset == 0 {
			continue
		}
		parts := make([]string, 0, len(votes)+1)
		for _, v := range votes {
			parts = append(parts, fmt.Sprintf("%s %q", instances(v.n), v.value))
		}
		if unset > 0 {
			parts = append(parts, fmt.Sprintf("%s no value", instances(unset)))
		}
		conflicts = append(conflicts, Problem{
			Key:    k,
			Value:  winner,
			Reason: fmt.Sprintf("instances disagree (%s); using %q, the value most instances set", strings.Join(parts, ", "), winner),
		})
	}
	return meta, conflicts
}

func instances(n int) string {
	if n == 1 {
		return "1 instance has"
	}
	return fmt.Sprintf("%d instances have", n)
}
