package infracheck

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gmailrelay/gmailrelay/internal/config"
)

// devOnlyEnv are variables the config package reads for `make dev` and tests
// (emulators, the sandbox); a deployment leaves them unset.
var devOnlyEnv = []string{"SECRET_MANAGER_EMULATOR_HOST", "GMAIL_ENDPOINT", "DELEGATION_ENDPOINT"}

// envTags returns the variables a config struct reads and whether each has a
// default, following embedded structs.
func envTags(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range envTags(f.Type) {
				out[k] = v
			}
			continue
		}
		tag, ok := f.Tag.Lookup("env")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		out[strings.TrimSpace(name)] = strings.Contains(opts, "default=")
	}
	return out
}

// TestFunctionEnvMatchesConfig keeps FunctionEnv, which the function-env
// check enforces on infra/, in step with what the config package reads: no
// name the functions would ignore, and no variable without a default that a
// deployment would leave unset.
func TestFunctionEnvMatchesConfig(t *testing.T) {
	configs := map[string]reflect.Type{
		"authorize":   reflect.TypeFor[config.Authorize](),
		"confirm":     reflect.TypeFor[config.Confirm](),
		"sender":      reflect.TypeFor[config.Sender](),
		"admin":       reflect.TypeFor[config.Admin](),
		"healthcheck": reflect.TypeFor[config.Healthcheck](),
	}
	for _, f := range Functions {
		read := envTags(configs[f])
		for _, name := range FunctionEnv[f] {
			if _, ok := read[name]; !ok && !slices.Contains(RuntimeEnv, name) {
				t.Errorf("%s: infra sets %s, which config.%s does not read", f, name, configs[f].Name())
			}
		}
		for name, hasDefault := range read {
			if !hasDefault && !slices.Contains(FunctionEnv[f], name) && !slices.Contains(devOnlyEnv, name) {
				t.Errorf("%s: config.%s reads %s, which has no default and infra does not set", f, configs[f].Name(), name)
			}
		}
	}
}
