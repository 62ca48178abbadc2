// Command logbook-porcupine checks a Logbook robustness history with Porcupine
// (github.com/anishathalye/porcupine), independently of the harness's own checker
// (tests/robustness/linearizability.rs), so that a bug in either shows up as a
// disagreement.
//
// Usage: logbook-porcupine [-timeout 30s] HISTORY.json
//
// The history is what tests/robustness/porcupine.rs exports: every operation the
// clients issued, raw (serializable reads, failures and unknown outcomes included):
//
//	{"ops": [{"client": 0, "key": 3, "invoke": 120, "ret": 450,
//	          "input": {"op": "cas", "expect": 7, "new": 9},
//	          "output": {"kind": "cas", "succeeded": false, "got": 8}}, ...]}
//
// ("ret": null when the outcome is unknown). It prints one JSON line per key:
//
//	{"key": 3, "ops": 41, "result": "Ok"}        (or "Illegal", or "Unknown" on timeout)
//
// The model is a register per key (P-compositionality: operations on different keys
// commute): absent, or a value with the lease it is attached to (0: none).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type input struct {
	Op     string  `json:"op"` // get, put, put_lease, revoke, delete, cas
	Value  uint64  `json:"value"`
	Lease  int64   `json:"lease"`
	Expect *uint64 `json:"expect"`
	New    uint64  `json:"new"`
	// Serializable reads are not linearizable by definition; they are not checked here.
	Serializable bool `json:"serializable"`
}

type output struct {
	Kind      string  `json:"kind"` // get, put, revoke, delete, cas, failed, unknown
	Value     *uint64 `json:"value"`
	Removed   *uint64 `json:"removed"`
	Succeeded bool    `json:"succeeded"`
	Got       *uint64 `json:"got"`
}

type record struct {
	Client int    `json:"client"`
	Key    int    `json:"key"`
	Invoke int64  `json:"invoke"`
	Ret    *int64 `json:"ret"`
	Input  input  `json:"input"`
	Output output `json:"output"`
}

type history struct {
	Ops []record `json:"ops"`
}

// state of one key's register.
type state struct {
	present bool
	value   uint64
	lease   int64
}

// The model's input and output: plain comparable values.
type in struct {
	op     string
	value  uint64
	lease  int64
	expect *uint64
	new    uint64
}

type out struct {
	kind      string // as output.Kind; "unknown" when the outcome is unknown
	value     *uint64
	removed   *uint64
	succeeded bool
	got       *uint64
}

func eqOpt(a *uint64, present bool, v uint64) bool {
	if a == nil {
		return !present
	}
	return present && *a == v
}

func step(st, i, o interface{}) (bool, interface{}) {
	s := st.(state)
	x := i.(in)
	y := o.(out)
	unknown := y.kind == "unknown"
	switch x.op {
	case "get":
		if unknown {
			return true, s
		}
		return y.kind == "get" && eqOpt(y.value, s.present, s.value), s
	case "put", "put_lease":
		if !unknown && y.kind != "put" {
			return false, s
		}
		lease := int64(0)
		if x.op == "put_lease" {
			lease = x.lease
		}
		return true, state{present: true, value: x.value, lease: lease}
	case "revoke":
		if !unknown && y.kind != "revoke" {
			return false, s
		}
		if s.present && s.lease == x.lease {
			return true, state{}
		}
		return true, s
	case "delete":
		if unknown {
			return true, state{}
		}
		return y.kind == "delete" && eqOpt(y.removed, s.present, s.value), state{}
	case "cas":
		matches := eqOpt(x.expect, s.present, s.value)
		if unknown {
			if matches {
				return true, state{present: true, value: x.new}
			}
			return true, s
		}
		if y.kind != "cas" {
			return false, s
		}
		if matches {
			return y.succeeded, state{present: true, value: x.new}
		}
		return !y.succeeded && eqOpt(y.got, s.present, s.value), s
	}
	return false, s
}

var model = porcupine.Model{
	Init:  func() interface{} { return state{} },
	Step:  step,
	Equal: func(a, b interface{}) bool { return a.(state) == b.(state) },
}

func main() {
	timeout := flag.Duration("timeout", 30*time.Second, "give up on a key after this long (its result is then Unknown)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: logbook-porcupine [-timeout 30s] HISTORY.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "logbook-porcupine: %v\n", err)
		os.Exit(2)
	}
	var h history
	if err := json.Unmarshal(raw, &h); err != nil {
		fmt.Fprintf(os.Stderr, "logbook-porcupine: %s: %v\n", flag.Arg(0), err)
		os.Exit(2)
	}

	// Every value some read returned, per key: a put or CAS (not a put with a lease)
	// whose outcome is unknown and whose value nobody saw may be left out (it could take effect after everything else, where
	// nobody would see it), which keeps the search small.
	observed := map[int]map[uint64]bool{}
	for _, r := range h.Ops {
		if observed[r.Key] == nil {
			observed[r.Key] = map[uint64]bool{}
		}
		for _, v := range []*uint64{r.Output.Value, r.Output.Removed, r.Output.Got} {
			if v != nil {
				observed[r.Key][*v] = true
			}
		}
	}
	byKey := map[int][]porcupine.Operation{}
	for _, r := range h.Ops {
		if r.Input.Op == "get" && r.Input.Serializable {
			continue
		}
		if r.Output.Kind == "failed" {
			continue
		}
		x := in{op: r.Input.Op, value: r.Input.Value, lease: r.Input.Lease, expect: r.Input.Expect, new: r.Input.New}
		y := out{kind: r.Output.Kind, value: r.Output.Value, removed: r.Output.Removed, succeeded: r.Output.Succeeded, got: r.Output.Got}
		ret := int64(math.MaxInt64)
		if r.Output.Kind == "unknown" || r.Ret == nil {
			y = out{kind: "unknown"}
			written := uint64(0)
			switch x.op {
			case "put", "put_lease":
				written = x.value
			case "cas":
				written = x.new
			}
			// Not a put with a lease: revoking the lease deletes the key, which
			// a read sees without ever seeing the value.
			if (x.op == "put" || x.op == "cas") && !observed[r.Key][written] {
				continue
			}
		} else {
			ret = *r.Ret
		}
		byKey[r.Key] = append(byKey[r.Key], porcupine.Operation{ClientId: r.Client, Input: x, Call: r.Invoke, Output: y, Return: ret})
	}
	keys := make([]int, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	enc := json.NewEncoder(os.Stdout)
	for _, k := range keys {
		ops := byKey[k]
		res := porcupine.CheckOperationsTimeout(model, ops, *timeout)
		if err := enc.Encode(map[string]interface{}{"key": k, "ops": len(ops), "result": string(res)}); err != nil {
			fmt.Fprintf(os.Stderr, "logbook-porcupine: %v\n", err)
			os.Exit(2)
		}
	}
}
