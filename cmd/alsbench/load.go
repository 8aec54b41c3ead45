package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// loadEnv, when set, makes the process the load generator, sending to the
// address it holds. The parent sets it when it re-executes itself.
const loadEnv = "ALSBENCH_LOAD_ADDR"

// loadSummary is what the load generator prints on its last line.
type loadSummary struct {
	Messages   uint64  `json:"messages"`
	Entries    uint64  `json:"entries"`
	CPUSeconds float64 `json:"cpuSeconds"`
	Errors     uint64  `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
}

// send is what a stream sends: a batch, stamped with the time when gRPC
// encodes it, after the stream's identifier on its first message.
type send struct {
	b     *batch
	ident []byte
}

// stampCodec encodes a *send by copying its encoding into a pooled buffer
// and stamping the time: the generator does no protobuf work per message.
type stampCodec struct {
	pool mem.BufferPool
	now  func() time.Time
}

func (c stampCodec) Marshal(v any) (mem.BufferSlice, error) {
	s, ok := v.(*send)
	if !ok {
		return nil, fmt.Errorf("stamp codec: cannot encode %T", v)
	}
	n := len(s.ident) + len(s.b.msg)
	buf := c.pool.Get(n)
	copy(*buf, s.ident)
	copy((*buf)[len(s.ident):], s.b.msg)
	s.b.stamp(*buf, len(s.ident), c.now().Unix())
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (stampCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("stamp codec: cannot decode into %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

func (stampCodec) Name() string { return "proto" }

// runLoad is the load generator: it opens one stream per sidecar, spread
// over cfg.conns connections, and sends each sidecar's batch round-robin
// as fast as flow control lets it, until ctx ends.
func runLoad(ctx context.Context, cfg config, addr string, out io.Writer) error {
	w, err := buildWorkload(cfg.gen(), time.Now())
	if err != nil {
		return err
	}
	if cfg.loadCPUProfile != "" {
		f, err := os.Create(cfg.loadCPUProfile)
		if err != nil {
			return fmt.Errorf("load cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("load cpu profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	codec := stampCodec{pool: mem.DefaultBufferPool(), now: time.Now}
	var (
		messages, entries, errCount atomic.Uint64
		firstErr                    atomic.Value
		wg                          sync.WaitGroup
	)
	fail := func(err error) {
		errCount.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	const method = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
	for c := range cfg.conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec)))
		if err != nil {
			return fmt.Errorf("connection %d: %w", c, err)
		}
		defer cc.Close()
		wg.Go(func() {
			// This connection's sidecars, each with its own stream.
			var mine []*sidecar
			for i := c; i < len(w.sidecars); i += cfg.conns {
				mine = append(mine, &w.sidecars[i])
			}
			streams := make([]grpc.ClientStream, len(mine))
			defer func() {
				for _, s := range streams {
					if s != nil {
						_ = s.CloseSend()
					}
				}
			}()
			for ctx.Err() == nil {
				for i, sc := range mine {
					if ctx.Err() != nil {
						return
					}
					msg := &send{b: &sc.batch}
					if streams[i] == nil {
						s, err := cc.NewStream(ctx, desc, method)
						if err != nil {
							fail(fmt.Errorf("open stream for %s: %w", sc.service, err))
							continue
						}
						streams[i], msg.ident = s, sc.ident
					}
					if err := streams[i].SendMsg(msg); err != nil {
						if ctx.Err() == nil {
							// The server ended the stream: RecvMsg says why.
							fail(fmt.Errorf("send for %s: %w", sc.service, streams[i].RecvMsg(&alsv3.StreamAccessLogsResponse{})))
						}
						streams[i] = nil
						continue
					}
					messages.Add(1)
					entries.Add(uint64(sc.batch.entries))
				}
			}
		})
	}
	wg.Wait()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	sum := loadSummary{Messages: messages.Load(), Entries: entries.Load(), Errors: errCount.Load(),
		CPUSeconds: time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)).Seconds()}
	if e, ok := firstErr.Load().(string); ok {
		sum.FirstError = e
	}
	if err := json.NewEncoder(out).Encode(sum); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if sum.Errors > 0 && sum.Entries == 0 {
		return errors.New("no entry sent: " + sum.FirstError)
	}
	return nil
}
