// Package deploy holds the files an operator installs to run signalbox and
// its sidecars on hosts (systemd units, example configs, Prometheus scrape
// config and alerting rules); it has no code. Its tests check those files
// with the tools that read them: promtool for the Prometheus files, Consul
// for the service definition, and signalbox's own sources for the metric
// names the alerts use.
package deploy
