package configs

import (
	"fmt"
	"strings"
	"time"
)

// FieldError is one problem with one configuration field. Path names the
// field the way it is written in the file ("groups[1].lifetime"); Msg says
// what was expected and what was found (`expected a duration ≥ 60s, got
// "5s"`). Msg never contains a secret's value.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found in one configuration, in the order the
// fields appear. Loading and validation return an Errors (as error) so a
// `-test` run lists all problems at once.
type Errors []*FieldError

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "configs: no errors"
	case 1:
		return "configs: " + es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "configs: %d problems:", len(es))
	for _, e := range es {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

// err returns es as an error, or nil when it is empty.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Warning is a problem that does not stop the configuration from loading,
// such as an unknown key (most often a misspelt one).
type Warning struct {
	Path string
	Msg  string
}

func (w Warning) String() string { return w.Path + ": " + w.Msg }

// checker collects FieldErrors while validating.
type checker struct {
	errs Errors
}

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// join builds a child path: join("groups[1]", "lifetime").
func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// index builds a list element path: index("groups", 1) = "groups[1]".
func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// human formats a duration the way people write them in the file: "60s",
// "5m", "1h", "1m30s".
func human(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d > time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d > 0 && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
