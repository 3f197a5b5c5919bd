// Package check validates what deploy/ and docker-compose.yml promise,
// without a Docker engine or a cluster: the compose file (alone, and with
// the deploy/compose.secured.yml override) through the compose-spec loader
// (the one docker compose uses), the Kubernetes manifests (the base, the
// example and the secured overlays) through kustomize's own renderer, then
// the structure on top (health checks, start order, non-root, probes,
// requests, PDBs, secrets from Secret objects, KEDA lag scaling on the right
// groups and topics, NetworkPolicies by what they let in and out,
// ingress-nginx's limits against the service's own; for the secured setups:
// TLS and SASL for every process, credentials only as read-only files, one
// Kafka user per role, KEDA authenticated like the pods it scales).
package check
