package demo

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	//lint:ignore SA1019 the issue asks for OpenTelemetry's Zipkin exporter: it is what the teams run.
	"go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
)

// Tracing is a demo service's OpenTelemetry instrumentation: spans of its
// gRPC server and clients, exported with OpenTelemetry's Zipkin exporter to
// a Zipkin collector (signalbox's /api/v2/spans). The service's version
// travels as the resource attribute service.version, which the exporter
// writes as a span tag.
type Tracing struct {
	provider *sdktrace.TracerProvider
	prop     propagation.TextMapPropagator
}

// NewTracing exports the spans of service (at version) to zipkinURL,
// sampling every call. batchTimeout is how long spans wait before they are
// sent (OpenTelemetry's default is 5 s).
func NewTracing(zipkinURL, service, version string, batchTimeout time.Duration) (*Tracing, error) {
	exp, err := zipkin.New(zipkinURL)
	if err != nil {
		return nil, fmt.Errorf("zipkin exporter for %s: %w", zipkinURL, err)
	}
	res := resource.NewWithAttributes("",
		attribute.String("service.name", service),
		attribute.String("service.version", version),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(batchTimeout)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	)
	return &Tracing{provider: tp, prop: propagation.TraceContext{}}, nil
}

// ServerOption instruments a gRPC server.
func (t *Tracing) ServerOption() grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(t.prop)))
}

// DialOption instruments a gRPC client.
func (t *Tracing) DialOption() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(t.provider), otelgrpc.WithPropagators(t.prop)))
}

// Flush sends the spans still waiting.
func (t *Tracing) Flush(ctx context.Context) error {
	if err := t.provider.ForceFlush(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop tracing: %w", err)
	}
	return nil
}
