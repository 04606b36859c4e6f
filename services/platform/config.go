package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Secret is a configuration value that must never be printed: it formats and
// logs as "[redacted]". Call Reveal where the value is really needed.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String masks the value so that fmt never prints it.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString masks the value for %#v as well.
func (s Secret) GoString() string { return s.String() }

// LogValue masks the value in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// ErrConfig reports invalid configuration.
var ErrConfig = errors.New("invalid configuration")

var durationType = reflect.TypeFor[time.Duration]()

// LoadConfig fills the struct pointed to by dst from environment variables.
// Each field names its variable with the tag `env:"NAME"`; the variable read is
// prefix+NAME (e.g. prefix "BULWARK_REDACTION_" and NAME "ADDR"). The tag
// `default:"..."` gives the value used when the variable is unset, and
// `required:"true"` makes an unset, default-less variable an error. Nested
// structs extend the prefix with their own env tag. Supported field types:
// string, Secret, bool, int, int64, float64, time.Duration and []string
// (comma-separated). Every problem is reported at once.
func LoadConfig(prefix string, dst any) error {
	return loadConfig(prefix, dst, os.LookupEnv)
}

func loadConfig(prefix string, dst any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%w: LoadConfig needs a pointer to a struct, got %T", ErrConfig, dst)
	}
	var problems []error
	fillStruct(prefix, v.Elem(), lookup, &problems)
	if len(problems) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(problems...))
	}
	return nil
}

func fillStruct(prefix string, v reflect.Value, lookup func(string) (string, bool), problems *[]error) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := f.Tag.Lookup("env")
		if !ok || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			fillStruct(prefix+name, fv, lookup, problems)
			continue
		}
		key := prefix + name
		raw, set := lookup(key)
		if !set {
			def, hasDefault := f.Tag.Lookup("default")
			if !hasDefault {
				if f.Tag.Get("required") == "true" {
					*problems = append(*problems, fmt.Errorf("%s is required", key))
				}
				continue
			}
			raw = def
		}
		if err := setField(fv, raw); err != nil {
			// The raw value is not echoed: it may be a secret.
			*problems = append(*problems, fmt.Errorf("%s: %w", key, err))
		}
	}
}

func setField(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("not a duration such as 500ms or 2m")
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("not a whole number")
		}
		fv.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return errors.New("not a number")
		}
		fv.SetFloat(x)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", fv.Type())
		}
		var items []string
		for item := range strings.SplitSeq(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		fv.Set(reflect.ValueOf(items).Convert(fv.Type()))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

// ConfigValue renders a config struct for slog with every Secret masked, so
// that a service can log its whole configuration at start.
func ConfigValue(cfg any) slog.Value {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	if v.Kind() != reflect.Struct {
		return slog.AnyValue(cfg)
	}
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		switch {
		case f.Type == reflect.TypeFor[Secret]():
			attrs = append(attrs, slog.Any(f.Name, fv.Interface().(Secret)))
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			attrs = append(attrs, slog.Attr{Key: f.Name, Value: ConfigValue(fv.Interface())})
		default:
			attrs = append(attrs, slog.Any(f.Name, fv.Interface()))
		}
	}
	return slog.GroupValue(attrs...)
}
