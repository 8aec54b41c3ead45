package als

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Reject reasons: why a stream was refused, for the counters.
const (
	// RejectNoIdentifier: the first message names no node with a cluster.
	RejectNoIdentifier = "no_identifier"
	// RejectTooLarge: a message over the server's grpc.MaxRecvMsgSize
	// (MaxMessageBytes).
	RejectTooLarge = "too_large"
	// RejectTooManyEntries: a message over MaxEntriesPerMessage.
	RejectTooManyEntries = "too_many_entries"
	// RejectMalformed: a message that is not a valid encoding.
	RejectMalformed = "malformed"
	// RejectUnauthorized: the node is not one the client may speak for
	// (see WithNodeCheck).
	RejectUnauthorized = "unauthorized"
)

// RejectReasons lists every reject reason, for metrics.
func RejectReasons() []string {
	return []string{RejectNoIdentifier, RejectTooLarge, RejectTooManyEntries, RejectMalformed, RejectUnauthorized}
}

// rejectIndex numbers the reasons for the counters; -1 for others.
func rejectIndex(reason string) int {
	switch reason {
	case RejectNoIdentifier:
		return 0
	case RejectTooLarge:
		return 1
	case RejectTooManyEntries:
		return 2
	case RejectMalformed:
		return 3
	case RejectUnauthorized:
		return 4
	}
	return -1
}

const numRejects = 5

// Server is the AccessLogService. Serve it on the xDS gRPC server with
// Register, and give that server grpc.MaxRecvMsgSize(MaxMessageBytes) and
// ServerOption().
type Server struct {
	alsv3.UnimplementedAccessLogServiceServer
	rec Recorder
	now func() time.Time
	log *slog.Logger
	// checkNode, when set, decides whether a stream may speak for the
	// node its identifier names.
	checkNode func(context.Context, *corev3.Node) error
	// scratch holds []facts for one message at a time: a stream that is
	// idle holds none.
	scratch sync.Pool

	// Entries counts the entries received, Recorded those recorded as
	// edges, Served those recorded in the served view, and Rejected the
	// streams refused (RejectedFor says why). They move once per message.
	Entries, Recorded, Served, Rejected atomic.Uint64
	skipped                             [numSkips]atomic.Uint64
	rejected                            [numRejects]atomic.Uint64
}

// Option configures a Server.
type Option func(*Server)

// WithLogger logs refused streams (at warn) to l.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.log = l }
}

// WithNodeCheck refuses, with PermissionDenied, a stream whose identifier
// names a node that check rejects (under mutual TLS: a node the client's
// certificate does not name, see xds/nodeauth). Nothing of a refused
// message is recorded.
func WithNodeCheck(check func(context.Context, *corev3.Node) error) Option {
	return func(s *Server) { s.checkNode = check }
}

// NewServer records into rec. now is when a message arrived: it stamps its
// entries without a start time, or with one off by more than
// topology.MaxSkew (see stamp).
func NewServer(rec Recorder, now func() time.Time, opts ...Option) *Server {
	s := &Server{rec: rec, now: now, log: slog.New(slog.DiscardHandler)}
	s.scratch.New = func() any {
		fs := make([]facts, 0, 128)
		return &fs
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Skipped is how many entries were not edges for a reason.
func (s *Server) Skipped(reason string) uint64 {
	if i := skipIndex(reason); i >= 0 {
		return s.skipped[i].Load()
	}
	return 0
}

// RejectedFor is how many streams were refused for a reason.
func (s *Server) RejectedFor(reason string) uint64 {
	if i := rejectIndex(reason); i >= 0 {
		return s.rejected[i].Load()
	}
	return 0
}

// Register serves the AccessLogService on r with the wire decoder (see the
// package documentation): use it rather than
// alsv3.RegisterAccessLogServiceServer, which decodes every field of every
// entry first.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	desc := alsv3.AccessLogService_ServiceDesc
	desc.Streams = []grpc.StreamDesc{{
		StreamName:    desc.Streams[0].StreamName,
		ClientStreams: true,
		Handler:       func(_ any, ss grpc.ServerStream) error { return s.streamWire(ss) },
	}}
	r.RegisterService(&desc, s)
}

// streamWire receives each message's encoding undecoded (see rawMessage).
func (s *Server) streamWire(ss grpc.ServerStream) error {
	var m rawMessage
	defer m.free()
	return s.serve(ss.Context(), func() ([]byte, error) {
		m.free() // the previous message is done with
		if err := ss.RecvMsg(&m); err != nil {
			return nil, err
		}
		return m.bytes(), nil
	}, func() error { return ss.SendMsg(&alsv3.StreamAccessLogsResponse{}) })
}

// StreamAccessLogs implements alsv3.AccessLogServiceServer for servers that
// register the generated way. Each decoded message is encoded again, so
// that one decoder decides everything; Register is faster.
func (s *Server) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	return s.serve(stream.Context(), func() ([]byte, error) {
		msg, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "encode the decoded message: %v", err)
		}
		return b, nil
	}, func() error { return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{}) })
}

// streamState is what a stream keeps between messages.
type streamState struct {
	ctx      context.Context
	id       Identity
	rawIdent []byte // the identifier id was read from
	msg      wireMessage
	dec      decoder
}

// refusal ends a stream.
type refusal struct {
	reason string
	code   codes.Code
	msg    string
}

func (s *Server) serve(ctx context.Context, recv func() ([]byte, error), done func() error) error {
	st := streamState{ctx: ctx}
	for n := 1; ; n++ {
		b, err := recv()
		if errors.Is(err, io.EOF) {
			return done()
		}
		if err != nil {
			if status.Code(err) == codes.ResourceExhausted {
				// gRPC has sent the client its own status ("grpc: received
				// message larger than max (N vs. M)"); this one is logged.
				return s.refuse(ctx, &st, refusal{RejectTooLarge, codes.ResourceExhausted,
					fmt.Sprintf("message %d: %s; keep the access logger's buffer_size_bytes far below %d", n, status.Convert(err).Message(), MaxMessageBytes)})
			}
			return err
		}
		if r := s.message(&st, b, n); r != nil {
			return s.refuse(ctx, &st, *r)
		}
	}
}

func (s *Server) refuse(ctx context.Context, st *streamState, r refusal) error {
	s.Rejected.Add(1)
	s.rejected[rejectIndex(r.reason)].Add(1)
	from := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "access log stream refused", slog.String("reason", r.reason),
		slog.String("peer", from), slog.String("service", st.id.Service), slog.String("error", r.msg))
	return status.Error(r.code, "access log stream: "+r.msg)
}

func malformed(n int, err error) *refusal {
	return &refusal{RejectMalformed, codes.InvalidArgument, fmt.Sprintf("message %d: %v", n, err)}
}

// message attributes and records one message (the n-th of its stream).
// Nothing of a refused message is recorded.
func (s *Server) message(st *streamState, b []byte, n int) *refusal {
	defer st.msg.forget()
	if err := st.msg.split(b); err != nil {
		return malformed(n, err)
	}
	if n == 1 || len(st.msg.identifier) > 0 {
		if r := s.identify(st, n); r != nil {
			return r
		}
	}

	buf := s.scratch.Get().(*[]facts)
	defer s.scratch.Put(buf)
	fs, err := st.dec.entries(&st.msg, (*buf)[:0])
	*buf = fs[:0]
	if errors.Is(err, errTooMany) {
		return &refusal{RejectTooManyEntries, codes.InvalidArgument,
			fmt.Sprintf("message %d has more than %d entries; send at most %d per message", n, MaxEntriesPerMessage, MaxEntriesPerMessage)}
	}
	if err != nil {
		return malformed(n, err)
	}

	var (
		now              = s.now() // the message's arrival
		recorded, served uint64
		skipped          [numSkips]uint64
	)
	for i := range fs {
		a := attribute(st.id, &fs[i])
		if a.Skip == "" || a.Served {
			a.Obs.Time = stamp(a.Obs, now)
		}
		if a.Skip == "" {
			if s.rec.Record(a.Obs) {
				recorded++
			}
		} else {
			skipped[skipIndex(a.Skip)]++
		}
		if a.Served && s.rec.RecordServed(a.Obs) {
			served++
		}
	}
	// One atomic add per message, not per entry: streams run on every core.
	s.Entries.Add(uint64(len(fs)))
	s.Recorded.Add(recorded)
	s.Served.Add(served)
	for i, c := range skipped {
		if c > 0 {
			s.skipped[i].Add(c)
		}
	}
	return nil
}

// identify reads the identifier of the n-th message. The first message
// must carry one; Envoy may repeat it later (after a reconnect of the same
// stream), and a later one that does not name a node is ignored.
func (s *Server) identify(st *streamState, n int) *refusal {
	raw := identifierBytes(st.msg.identifier)
	if n > 1 && bytes.Equal(raw, st.rawIdent) {
		return nil
	}
	var ident *alsv3.StreamAccessLogsMessage_Identifier
	if len(st.msg.identifier) > 0 {
		ident = &alsv3.StreamAccessLogsMessage_Identifier{}
		if err := proto.Unmarshal(raw, ident); err != nil {
			return malformed(n, fmt.Errorf("identifier: %w", err))
		}
	}
	id, err := IdentityOf(ident)
	if err != nil {
		if n == 1 {
			return &refusal{RejectNoIdentifier, codes.InvalidArgument, err.Error()}
		}
		return nil
	}
	if s.checkNode != nil {
		if err := s.checkNode(st.ctx, ident.GetNode()); err != nil {
			return &refusal{RejectUnauthorized, codes.PermissionDenied, status.Convert(err).Message()}
		}
	}
	st.id, st.rawIdent = id, append(st.rawIdent[:0], raw...)
	return nil
}
