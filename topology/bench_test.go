package topology

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRecord is ingest throughput of the store alone, from parallel
// writers over 5,000 edges.
func BenchmarkRecord(b *testing.B) {
	s := New(Options{})
	var keys []Observation
	for i := 0; i < 5000; i++ {
		keys = append(keys, obs(0, fmt.Sprintf("svc-%d", i%1000), "v1", fmt.Sprintf("svc-%d", (i*7+1)%1000), "v1", 200, 12*time.Millisecond))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			o := keys[i%len(keys)]
			o.Time = t0.Add(time.Duration(i) * time.Microsecond)
			s.Record(o)
			i++
		}
	})
}

// BenchmarkGraph is a 5-minute graph query at 1,000 nodes / 5,000 edges with
// every bucket filled (issue 4's goal: p99 ≤ 10 ms).
func BenchmarkGraph(b *testing.B) {
	s := New(Options{})
	for i := 0; i < 5000; i++ {
		for sec := 0; sec < 300; sec += 10 {
			s.Record(obs(time.Duration(sec)*time.Second, fmt.Sprintf("svc-%d", i%1000), "v1", fmt.Sprintf("svc-%d", (i*7+1)%1000), "v1", 200, time.Duration(i%50+1)*time.Millisecond))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if _, err := s.Graph(t0.Add(299*time.Second), 5*time.Minute, ByVersion); err != nil {
			b.Fatal(err)
		}
	}
}
