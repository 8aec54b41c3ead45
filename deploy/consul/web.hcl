# An app instance "web-1" of the service "web", and its Envoy sidecar, as a
# Consul agent service definition. Either drop this file into the agent's
# config dir (/etc/consul.d/) and `consul reload`, or register it with
#   consul services register web.hcl
# and remove it again with `consul services deregister web.hcl`.
#
# signalbox reads everything here from the catalog; it uses none of Consul's
# Connect features (CA, intentions, Consul's own xDS). See
# docs/sidecar-guide.md.
service {
  # The ID must be unique in the whole datacenter, not only on this agent:
  # signalbox matches sidecars to instances by ID. Include the host when
  # several hosts run the same service (web-host1-1, ...).
  id   = "web-1"
  name = "web"
  # address defaults to the node's address; that is where callers'
  # sidecars connect (to the sidecar port below, not to 8080).
  port = 8080

  meta {
    # The version subset: what releases shift traffic between.
    version = "v1"

    # Per-service overrides of signalbox's telemetry: and traffic: config
    # (xds/policy/doc.go lists every key). Consul has no service-level meta,
    # so give every instance of "web" the same values: when instances
    # disagree, the value most of them set wins and /debug/xds/sidecars
    # reports the disagreement.
    signalbox-trace-sampling  = "10"
    signalbox-request-timeout = "5s"
    signalbox-retries         = "3"
    signalbox-retry-on        = "connect-failure,refused-stream,unavailable,gateway-error"
  }

  # The app's own check. A critical instance gets no traffic.
  check {
    id       = "web-1-http"
    name     = "web HTTP on :8080"
    http     = "http://127.0.0.1:8080/healthz"
    interval = "5s"
    timeout  = "2s"
  }

  # The sidecar registration: Consul registers "web-1-sidecar-proxy" (service
  # "web-sidecar-proxy", kind connect-proxy) with a TCP check on its port
  # and an alias of web-1's health. signalbox then:
  #   - sends callers to <node address>:21000 (the sidecar's inbound
  #     listener) instead of :8080, and only while both web-1 and its
  #     sidecar are healthy;
  #   - gives the Envoy whose node id is "web-1-sidecar-proxy" an inbound
  #     listener on 0.0.0.0:21000 to 127.0.0.1:8080, and the upstreams below:
  #     "api" on 127.0.0.1:9191 (and through the outbound listener
  #     127.0.0.1:15001 with Host: api).
  connect {
    sidecar_service {
      port = 21000
      proxy {
        upstreams = [
          {
            destination_name = "api"
            local_bind_port  = 9191
          }
        ]
      }
    }
  }
}
