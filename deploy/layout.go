// Package deploy holds the pipeline's topic layout, embedded so that the
// services check their topics against the very file `ctl topics apply`
// applies, compose bakes into the image and Kubernetes mounts.
package deploy

import _ "embed"

// Topics is deploy/topics.yaml.
//
//go:embed topics.yaml
var Topics []byte
