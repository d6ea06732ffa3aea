// Command lua-health runs an Argo CD health check (health.lua) on its test data (health_test.yaml)
// with gopher-lua, the Lua that Argo CD embeds, the way Argo CD runs it (argo-cd util/lua/lua.go,
// runLua and ExecuteHealthLua): only the package, base and table libraries are open, the object is
// the global `obj`, and the script's returned table is read as {status, message}.
//
//	lua-health DIR    # DIR holds health.lua and health_test.yaml
//
// It prints one JSON line per test case and exits 1 when any result differs from the expectation.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type testFile struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

// toLua converts a decoded JSON/YAML value to a Lua value (maps and lists become tables).
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case map[string]any:
		t := l.NewTable()
		for k, item := range x {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	default:
		panic(fmt.Sprintf("unsupported value %T", v))
	}
}

func run(script string, obj map[string]any) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("health.lua returned %s, not a table", l.Get(-1).Type())
	}
	return healthStatus{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lua-health DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var tests testFile
	if err := yaml.UnmarshalStrict(raw, &tests); err != nil {
		fmt.Fprintln(os.Stderr, "health_test.yaml:", err)
		os.Exit(2)
	}
	if len(tests.Tests) == 0 {
		fmt.Fprintln(os.Stderr, "health_test.yaml: no tests")
		os.Exit(2)
	}
	failed := false
	for _, tc := range tests.Tests {
		input, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		obj := map[string]any{}
		if err := yaml.Unmarshal(input, &obj); err != nil {
			fmt.Fprintln(os.Stderr, tc.InputPath+":", err)
			os.Exit(2)
		}
		got, err := run(string(script), obj)
		line := map[string]any{"inputPath": tc.InputPath, "expected": tc.HealthStatus, "got": got, "ok": err == nil && got == tc.HealthStatus}
		if err != nil {
			line["error"] = err.Error()
		}
		if line["ok"] != true {
			failed = true
		}
		out, _ := json.Marshal(line)
		fmt.Println(string(out))
	}
	if failed {
		os.Exit(1)
	}
}
