package als

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/emptypb"
)

// ServerOption makes a gRPC server hand the AccessLogService (as Register
// serves it) each message's bytes in gRPC's own receive buffer, without the
// copy and allocation that decoding into a message costs (about a tenth of
// the ingest's CPU). Every other message, of every service on the server,
// is encoded and decoded by gRPC's proto codec as without the option; the
// service works without it too, a little slower.
//
// It is grpc.ForceServerCodecV2, which gRPC marks experimental.
func ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2(grpcproto.Name), pool: &copyPool{}})
}

// copyPool holds the buffers the codec copies messages into when gRPC
// received them in several pieces. Unlike gRPC's pool it does not clear a
// buffer it hands out: the copy overwrites all of it.
type copyPool struct{ p sync.Pool }

// maxPooled keeps the rare large message's buffer out of the pool.
const maxPooled = 256 << 10

func (p *copyPool) Get(n int) *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		if cap(*b) >= n {
			*b = (*b)[:n]
			return b
		}
		p.p.Put(b)
	}
	b := make([]byte, n, max(n, 32<<10))
	return &b
}

func (p *copyPool) Put(b *[]byte) {
	if cap(*b) <= maxPooled {
		p.p.Put(b)
	}
}

// codec is gRPC's proto codec, except for rawMessage.
type codec struct {
	proto encoding.CodecV2
	pool  mem.BufferPool
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*rawMessage); ok {
		// One buffer is kept by reference; a message split over several
		// is copied into one from the pool.
		m.buf = data.MaterializeToBuffer(c.pool)
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (c codec) Name() string { return c.proto.Name() }

// rawMessage receives a message without decoding it. With codec it holds
// gRPC's buffer; with any proto codec it is an Empty, whose unknown fields
// are then the whole encoding.
type rawMessage struct {
	emptypb.Empty
	buf mem.Buffer
}

// bytes is the encoding, valid until free.
func (m *rawMessage) bytes() []byte {
	if m.buf != nil {
		return m.buf.ReadOnlyData()
	}
	return m.Empty.ProtoReflect().GetUnknown()
}

func (m *rawMessage) free() {
	if m.buf != nil {
		m.buf.Free()
		m.buf = nil
	}
}
