// Package check validates what deploy/ and docker-compose.yml promise,
// without a Docker engine or a cluster: the compose file through the
// compose-spec loader (the one docker compose uses), the Kubernetes
// manifests through kustomize's own renderer, then the structure on top
// (health checks, start order, non-root, probes, requests, PDBs, secrets
// from Secret objects, KEDA lag scaling on the right groups and topics).
package check
