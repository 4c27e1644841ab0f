// Package deploy holds the deployment files of kapfhir (Dockerfile,
// docker-compose, Kubernetes manifests, Prometheus rules, Grafana
// dashboard) and the tests that check them against the service: see
// docs/operations.md. It has no code of its own.
package deploy
