package avro

import (
	"errors"
	"fmt"
	"strings"
)

// Compatibility levels, as schema registries name them: BACKWARD, a new
// schema reads data written with earlier ones; FORWARD, earlier ones read
// the new one's; FULL, both; _TRANSITIVE, against every earlier version,
// not just the latest; NONE, no check.
const (
	None               = "NONE"
	Backward           = "BACKWARD"
	BackwardTransitive = "BACKWARD_TRANSITIVE"
	Forward            = "FORWARD"
	ForwardTransitive  = "FORWARD_TRANSITIVE"
	Full               = "FULL"
	FullTransitive     = "FULL_TRANSITIVE"
)

// Levels are the compatibility levels Check knows.
var Levels = []string{None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive}

// Check reports whether candidate may follow earlier (oldest first) under
// level: nil, or an error naming each version and direction that fails.
func Check(level string, candidate *Schema, earlier []*Schema) error {
	switch level {
	case None:
		return nil
	case Backward, Forward, Full:
		if len(earlier) > 0 {
			earlier = earlier[len(earlier)-1:]
		}
	case BackwardTransitive, ForwardTransitive, FullTransitive:
	default:
		return fmt.Errorf("avro: unknown compatibility level %q", level)
	}
	backward := !strings.HasPrefix(level, "FORWARD")
	forward := !strings.HasPrefix(level, "BACKWARD")
	var errs []error
	for i, old := range earlier {
		n := len(earlier) - i // versions back from the candidate
		if backward {
			if err := CanRead(candidate, old); err != nil {
				errs = append(errs, fmt.Errorf("backward: cannot read data of the version %d back: %w", n, err))
			}
		}
		if forward {
			if err := CanRead(old, candidate); err != nil {
				errs = append(errs, fmt.Errorf("forward: the version %d back cannot read its data: %w", n, err))
			}
		}
	}
	return errors.Join(errs...)
}

// FullyCompatible reports whether every version reads every other's data
// (FULL_TRANSITIVE over the whole list, in any order).
func FullyCompatible(versions []*Schema) error {
	var errs []error
	for i, r := range versions {
		for j, w := range versions {
			if i == j {
				continue
			}
			if err := CanRead(r, w); err != nil {
				errs = append(errs, fmt.Errorf("version %d cannot read version %d: %w", i+1, j+1, err))
			}
		}
	}
	return errors.Join(errs...)
}
