package als

import (
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/topology"
)

// fullEntry has the fields Envoy's http_grpc logger fills, about 400 bytes.
func fullEntry(i int) *accesslogdatav3.HTTPAccessLogEntry {
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	d := func(ms int) *durationpb.Duration { return durationpb.New(time.Duration(ms) * time.Millisecond) }
	return &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			SampleRate: 1, DownstreamRemoteAddress: addr("127.0.0.1", 43210), DownstreamLocalAddress: addr("127.0.0.1", 15001),
			StartTime: timestamppb.New(start), TimeToLastRxByte: d(0), TimeToFirstUpstreamTxByte: d(1), TimeToLastUpstreamTxByte: d(1),
			TimeToFirstUpstreamRxByte: d(10), TimeToLastUpstreamRxByte: d(11), TimeToFirstDownstreamTxByte: d(10), TimeToLastDownstreamTxByte: d(12),
			UpstreamRemoteAddress: addr("10.1.2.3", 8080), UpstreamLocalAddress: addr("10.0.0.1", 34567),
			UpstreamCluster: fmt.Sprintf("outbound|svc-%04d|v1", i%5), ResponseFlags: &accesslogdatav3.ResponseFlags{}, RouteName: "svc",
			DownstreamDirectRemoteAddress: addr("127.0.0.1", 43210), Duration: d(12), UpstreamRequestAttemptCount: 1,
			StreamId: "0123456789abcdef", DownstreamWireBytesSent: 1200, DownstreamWireBytesReceived: 300, UpstreamWireBytesSent: 300,
			UpstreamWireBytesReceived: 1200, AccessLogType: accesslogdatav3.AccessLogType_DownstreamEnd,
		},
		ProtocolVersion: accesslogdatav3.HTTPAccessLogEntry_HTTP11,
		Request: &accesslogdatav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Scheme: "http", Authority: "svc:8080",
			Path: "/api/v1/items/12345", UserAgent: "Go-http-client/1.1", RequestId: "5f0e7c3a-1b2c-4d3e-a4f5-0123456789ab",
			RequestHeadersBytes: 200, RequestBodyBytes: 10},
		Response: &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200), ResponseHeadersBytes: 150,
			ResponseBodyBytes: 1000, ResponseCodeDetails: "via_upstream"},
	}
}

// discard is a Recorder that keeps nothing, to time als alone.
type discard struct{}

func (discard) Record(topology.Observation) bool       { return true }
func (discard) RecordServed(topology.Observation) bool { return true }

// BenchmarkMessage is one 40-entry message, decoded and attributed, per
// op (no gRPC): the wire decoder against protobuf's decoding.
func BenchmarkMessage(b *testing.B) {
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{}}}
	for i := range 40 {
		msg.GetHttpLogs().LogEntry = append(msg.GetHttpLogs().LogEntry, fullEntry(i))
	}
	enc, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range []struct {
		name string
		r    Recorder
	}{{"discard", discard{}}, {"store", topology.New(topology.Options{})}} {
		b.Run("wire/"+rec.name, func(b *testing.B) {
			s := NewServer(rec.r, time.Now)
			st := streamState{id: webOut}
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if r := s.message(&st, enc, 2); r != nil {
					b.Fatal(r.msg)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*40), "ns/entry")
		})
	}
	b.Run("protobuf/discard", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			var m alsv3.StreamAccessLogsMessage
			if err := proto.Unmarshal(enc, &m); err != nil {
				b.Fatal(err)
			}
			for _, e := range m.GetHttpLogs().GetLogEntry() {
				_ = Attribute(webOut, e)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*40), "ns/entry")
	})
}
