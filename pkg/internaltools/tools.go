//go:build tools

// Package internaltools pins test-only modules so go mod tidy keeps them.
package internaltools

import (
	_ "github.com/google/go-cmp/cmp"
	_ "go.uber.org/goleak"
)
