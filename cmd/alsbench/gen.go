package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/topology/als"
	"github.com/signalbox/signalbox/xds/ir"
)

// workload is what the load generator sends: per simulated sidecar, the
// identifier of its stream and one batch of entries, encoded once.
type workload struct {
	sidecars []sidecar
	edges    int // distinct caller → callee pairs
	entries  int // entries in all batches
	bytes    int // bytes of all batches
}

type sidecar struct {
	service string
	// ident is the identifier field, encoded: prepended to the first batch
	// of the stream (encodings concatenate into one message).
	ident []byte
	batch batch
}

// batch is an encoded StreamAccessLogsMessage without identifier. seconds
// are the offsets of each entry's start_time seconds, a 5-byte varint that
// the sender rewrites to the current time before each send, so that the
// store's time buckets turn over as they do in production.
type batch struct {
	msg     []byte
	seconds []int
	entries int
}

// secondsWidth is the varint length of a Unix time in seconds between 2^28
// (1978) and 2^35 (3058).
const secondsWidth = 5

// genConfig sizes the workload.
type genConfig struct {
	services, sidecars, edges int
	batch, bufferBytes        int // entries per batch, or 0 to fill bufferBytes as Envoy does
	inbound                   float64
	seed                      uint64
}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// upstream is one edge of a sidecar.
type upstream struct {
	service, subset string
	grpc            bool
	baseLatency     time.Duration
}

// buildWorkload makes every sidecar's batch. Sidecar i fronts service
// i % services; its upstreams are spread so that the graph has about
// cfg.edges edges. A share cfg.inbound of the sidecars report their inbound
// side instead (requests from callers with a sidecar: the served view).
func buildWorkload(cfg genConfig, now time.Time) (*workload, error) {
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5ca1ab1e))
	w := &workload{}
	perSidecar := max(1, cfg.edges/cfg.sidecars)
	inbound := int(float64(cfg.sidecars) * cfg.inbound)
	for i := range cfg.sidecars {
		svc := i % cfg.services
		version := "v1"
		if svc%10 == 0 {
			version = "v2" // a canary here and there
		}
		logName := als.LogOutbound
		if i >= cfg.sidecars-inbound {
			logName = als.LogInbound
		}
		ups := make([]upstream, perSidecar)
		for k := range ups {
			t := (svc*7 + k*131 + 1) % cfg.services
			if t == svc {
				t = (t + 1) % cfg.services
			}
			subset := "v1"
			if k%3 == 2 {
				subset = "" // a route without a plan
			}
			ups[k] = upstream{service: serviceName(t), subset: subset, grpc: (svc+k)%5 == 0,
				baseLatency: time.Duration(2+rng.IntN(80)) * time.Millisecond}
		}
		w.edges += len(ups)
		sc := sidecar{service: serviceName(svc)}
		meta, err := structpb.NewStruct(map[string]any{ir.NodeMetaVersion: version})
		if err != nil {
			return nil, fmt.Errorf("node metadata: %w", err)
		}
		id := &alsv3.StreamAccessLogsMessage_Identifier{
			Node:    &corev3.Node{Id: fmt.Sprintf("%s-%d.sidecar", sc.service, i), Cluster: sc.service, Metadata: meta, UserAgentName: "envoy"},
			LogName: logName,
		}
		idBytes, err := proto.Marshal(id)
		if err != nil {
			return nil, fmt.Errorf("encode identifier: %w", err)
		}
		sc.ident = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), idBytes)
		if sc.batch, err = buildBatch(rng, cfg, sc.service, logName, ups, now); err != nil {
			return nil, err
		}
		w.entries += sc.batch.entries
		w.bytes += len(sc.batch.msg)
		w.sidecars = append(w.sidecars, sc)
	}
	return w, nil
}

// buildBatch fills one batch: cfg.batch entries, or entries until the
// message reaches cfg.bufferBytes (Envoy flushes once its buffer holds
// buffer_size_bytes).
func buildBatch(rng *rand.Rand, cfg genConfig, self, logName string, ups []upstream, now time.Time) (batch, error) {
	var list []byte // the HTTPAccessLogEntries body
	var offsets []int
	var b batch
	for {
		if cfg.batch > 0 && b.entries == cfg.batch || cfg.batch == 0 && len(list) >= cfg.bufferBytes {
			break
		}
		e := realisticEntry(rng, self, logName, ups[b.entries%len(ups)], now)
		enc, err := proto.Marshal(e)
		if err != nil {
			return b, fmt.Errorf("encode entry: %w", err)
		}
		off, err := startSecondsOffset(enc)
		if err != nil {
			return b, err
		}
		list = protowire.AppendTag(list, 1, protowire.BytesType)
		list = protowire.AppendVarint(list, uint64(len(enc)))
		offsets = append(offsets, len(list)+off)
		list = append(list, enc...)
		b.entries++
	}
	head := protowire.AppendTag(nil, 2, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(list)))
	b.msg = append(head, list...)
	for _, o := range offsets {
		b.seconds = append(b.seconds, len(head)+o)
	}
	return b, nil
}

// realisticEntry is an HTTP access log entry with the fields Envoy's
// http_grpc logger fills for a sidecar signalbox configured.
func realisticEntry(rng *rand.Rand, self, logName string, up upstream, now time.Time) *accesslogdatav3.HTTPAccessLogEntry {
	latency := time.Duration(float64(up.baseLatency) * (0.5 + rng.ExpFloat64()))
	d := func(f float64) *durationpb.Duration { return durationpb.New(time.Duration(float64(latency) * f)) }
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	upIP := fmt.Sprintf("10.%d.%d.%d", rng.IntN(250), rng.IntN(250), 1+rng.IntN(250))
	cluster := "outbound|" + up.service
	if up.subset != "" {
		cluster += "|" + up.subset
	}
	if logName == als.LogInbound {
		cluster = "inbound|" + self + "|8080"
	}
	e := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			SampleRate:                    1,
			DownstreamRemoteAddress:       addr("127.0.0.1", 40000+uint32(rng.IntN(20000))),
			DownstreamLocalAddress:        addr("127.0.0.1", 15001),
			StartTime:                     timestamppb.New(now.Add(-time.Duration(rng.IntN(1000)) * time.Millisecond)),
			TimeToLastRxByte:              d(0.01),
			TimeToFirstUpstreamTxByte:     d(0.02),
			TimeToLastUpstreamTxByte:      d(0.03),
			TimeToFirstUpstreamRxByte:     d(0.9),
			TimeToLastUpstreamRxByte:      d(0.98),
			TimeToFirstDownstreamTxByte:   d(0.91),
			TimeToLastDownstreamTxByte:    d(1),
			UpstreamRemoteAddress:         addr(upIP, 8080),
			UpstreamLocalAddress:          addr("10.0.0.1", 30000+uint32(rng.IntN(30000))),
			UpstreamCluster:               cluster,
			ResponseFlags:                 &accesslogdatav3.ResponseFlags{},
			RouteName:                     up.service,
			DownstreamDirectRemoteAddress: addr("127.0.0.1", 40000+uint32(rng.IntN(20000))),
			Duration:                      d(1),
			UpstreamRequestAttemptCount:   1,
			StreamId:                      fmt.Sprintf("%016x", rng.Uint64()),
			DownstreamWireBytesSent:       uint64(200 + rng.IntN(2000)),
			DownstreamWireBytesReceived:   uint64(150 + rng.IntN(500)),
			UpstreamWireBytesSent:         uint64(150 + rng.IntN(500)),
			UpstreamWireBytesReceived:     uint64(200 + rng.IntN(2000)),
			AccessLogType:                 accesslogdatav3.AccessLogType_DownstreamEnd,
		},
		ProtocolVersion: accesslogdatav3.HTTPAccessLogEntry_HTTP11,
		Request: &accesslogdatav3.HTTPRequestProperties{
			RequestMethod:       corev3.RequestMethod_GET,
			Scheme:              "http",
			Authority:           up.service + ":8080",
			Path:                fmt.Sprintf("/api/v1/items/%d", rng.IntN(100000)),
			UserAgent:           "Go-http-client/1.1",
			RequestId:           fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1)),
			RequestHeadersBytes: uint64(150 + rng.IntN(300)),
			RequestBodyBytes:    uint64(rng.IntN(200)),
		},
		Response: &accesslogdatav3.HTTPResponseProperties{
			ResponseHeadersBytes: uint64(100 + rng.IntN(100)),
			ResponseBodyBytes:    uint64(rng.IntN(4000)),
			ResponseCodeDetails:  "via_upstream",
		},
	}
	if logName == als.LogInbound {
		// A caller with a sidecar sent it: the served view only.
		e.Request.RequestHeaders = map[string]string{als.DownstreamClusterHeader: serviceName(rng.IntN(1000))}
	}
	code := uint32(200)
	switch r := rng.Float64(); {
	case r < 0.005:
		code = 0
		e.CommonProperties.ResponseFlags.UpstreamConnectionFailure = true
		e.Response.ResponseCodeDetails = "upstream_reset_before_response_started{connection_failure}"
	case r < 0.015:
		code = 503
	case r < 0.025:
		code = 500
	case r < 0.045:
		code = 404
	case r < 0.05:
		code = 301
	}
	if code != 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(code)
	}
	if up.grpc {
		e.ProtocolVersion = accesslogdatav3.HTTPAccessLogEntry_HTTP2
		e.Request.RequestMethod = corev3.RequestMethod_POST
		e.Request.Scheme = "http"
		e.Request.Path = "/" + up.service + ".v1.Items/Get"
		e.Request.UserAgent = "grpc-go/1.70.0"
		e.Response.ResponseCode = wrapperspb.UInt32(200)
		switch {
		case code == 0:
			// Envoy answers a gRPC request it could not forward with a
			// trailers-only UNAVAILABLE.
			e.Response.ResponseHeaders = map[string]string{"grpc-status": "14"}
		case code >= 500:
			e.Response.ResponseTrailers = map[string]string{"grpc-status": "14"}
		case code == 404:
			e.Response.ResponseTrailers = map[string]string{"grpc-status": "5"}
		default:
			e.Response.ResponseTrailers = map[string]string{"grpc-status": "0"}
		}
	}
	return e
}

// startSecondsOffset finds the start_time seconds in an encoded entry and
// checks that they take secondsWidth bytes.
func startSecondsOffset(enc []byte) (int, error) {
	at, sub, ok := findField(enc, 0, 1) // common_properties
	if ok {
		at, sub, ok = findField(sub, at, 5) // start_time
	}
	if !ok {
		return 0, fmt.Errorf("entry without a start time")
	}
	for b, pos := sub, at; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		if num == 1 && typ == protowire.VarintType {
			if m != secondsWidth {
				return 0, fmt.Errorf("start time seconds take %d bytes, want %d", m, secondsWidth)
			}
			return pos + n, nil
		}
		b, pos = b[n+m:], pos+n+m
	}
	return 0, fmt.Errorf("start time without seconds")
}

// findField returns the value of the first length-delimited field num in
// b, and its offset (base is b's own offset).
func findField(b []byte, base int, num protowire.Number) (int, []byte, bool) {
	pos := base
	for len(b) > 0 {
		n2, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, false
		}
		if n2 == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return 0, nil, false
			}
			return pos + n + (m - len(v)), v, true
		}
		m := protowire.ConsumeFieldValue(n2, typ, b[n:])
		if m < 0 {
			return 0, nil, false
		}
		b, pos = b[n+m:], pos+n+m
	}
	return 0, nil, false
}

// stamp writes t's Unix seconds into every entry of msg (a copy of a
// batch's encoding, starting at off within msg).
func (b *batch) stamp(msg []byte, off int, sec int64) {
	for _, o := range b.seconds {
		p := msg[off+o : off+o+secondsWidth]
		v := uint64(sec)
		for i := range secondsWidth - 1 {
			p[i] = byte(v&0x7f) | 0x80
			v >>= 7
		}
		p[secondsWidth-1] = byte(v)
	}
}
