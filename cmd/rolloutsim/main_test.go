package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"strings"
	"testing"
)

// table is the report without its command line, which names the flags.
func table(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	_, rest, _ := strings.Cut(out.String(), "\n")
	return rest
}

func TestReportIsDeterministic(t *testing.T) {
	args := []string{"-runs", "40", "-detect-runs", "40", "-rates", "200,2000", "-max", "2m"}
	one := table(t, append(args, "-workers", "1")...)
	two := table(t, append(args, "-workers", "3")...)
	if one != two {
		t.Errorf("the report depends on the number of workers:\n%s\nversus\n%s", one, two)
	}
	for _, row := range []string{"| 200 | sequential | ", "| 200 | fixed 99%/1m | ", "| 2000 | sequential | ", "2× median", "5× undetected"} {
		if !strings.Contains(one, row) {
			t.Errorf("report lacks %q:\n%s", row, one)
		}
	}
	// At 2,000 requests/s a window holds about 6,000 candidate requests, and
	// an A/A candidate's 0.5% errors never reach the fixed rule's 1%.
	if !strings.Contains(one, "| 2000 | fixed 99%/1m | 0/40 = 0.00% (0.00–8.81%) | ") {
		t.Errorf("unexpected fixed-rule A/A row at 2000 rps:\n%s", one)
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-rates", "20,x"}, `-rates: "x"`},
		{[]string{"-share", "1"}, "-share 1"},
		{[]string{"-look", "1500ms"}, "-look 1.5s"},
		{[]string{"-alpha", "2"}, "alpha 2"},
		{[]string{"-prior", "1:50:10:4:1"}, "not a valid prior"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
}

func TestClopperPearson(t *testing.T) {
	// Reference values: 0 of 10,000 gives [0, 0.000369] (the rule of three
	// refined), 100 of 10,000 gives [0.00814, 0.01215].
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{{0, 10000, 0, 0.000368}, {100, 10000, 0.00814, 0.01215}, {40, 40, 0.9119, 1}} {
		lo, hi := clopperPearson(c.k, c.n)
		if math.Abs(lo-c.lo) > 5e-5 || math.Abs(hi-c.hi) > 5e-5 {
			t.Errorf("%d/%d: [%.5f, %.5f], want [%.5f, %.5f]", c.k, c.n, lo, hi, c.lo, c.hi)
		}
	}
}
