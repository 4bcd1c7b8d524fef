// pcheck: Porcupine's checker on the harness's JSONL histories, for `harness bench-check
// --against`. One line per file: FILE<TAB>SECONDS<TAB>VERDICT (valid, INVALID, unknown).
//
// The history is paired into porcupine.Operations the way Porcupine's own etcd test treats
// crashed operations: positions in the file are the times; a failed op did not happen and is
// dropped, except a cas whose compare failed (it ran: a cas whose compare did not hold); a
// crashed write or cas returns at infinity with an unknown outcome; a crashed read is
// dropped. Partitioned by key; a register model on interned values, with state hashing; with
// appends (Porcupine's kv histories) the values are strings and the initial value is "", as in
// Porcupine's own kv model, else it is null.
// Only the check is timed (CheckOperationsTimeout), the fastest of PCHECK_REPEAT runs (3),
// each with a budget of PCHECK_TIMEOUT_S seconds (60).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	opRead = iota
	opWrite
	opCas
	opAppend
)

type input struct {
	kind, a, b int
	unknown    bool // crashed: the outcome is not known
	failed     bool // a cas whose compare failed
}

type output struct {
	value int
}

type event struct {
	Process       json.RawMessage `json:"process"`
	Type          string          `json:"type"`
	F             string          `json:"f"`
	Key           json.RawMessage `json:"key"`
	Value         json.RawMessage `json:"value"`
	CompareFailed bool            `json:"compare_failed"`
}

type open struct {
	op  porcupine.Operation
	in  input
	key string
}

const infinity = int64(1) << 62

// table interns values as ints: JSON text for most, "s" + the string for strings (so that
// appends can build new ones); id 0 is null
// (locked: Porcupine checks the partitions in parallel goroutines)
type table struct {
	mu    sync.Mutex
	ids   map[string]int
	texts []string
}

var vals = &table{ids: map[string]int{"null": 0}, texts: []string{"null"}}

func (t *table) intern(k string) int {
	if id, ok := t.ids[k]; ok {
		return id
	}
	id := len(t.texts)
	t.ids[k] = id
	t.texts = append(t.texts, k)
	return id
}

func (t *table) id(raw json.RawMessage) int {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return t.intern("s" + s)
	}
	if len(raw) == 0 {
		return 0
	}
	return t.intern(string(raw))
}

// appended: the id of the string value id a with the string value id b after it
func (t *table) appended(a, b int) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x, y := t.texts[a], t.texts[b]
	if a == 0 {
		x = "s"
	}
	if x[0] != 's' || y[0] != 's' {
		return 0, false
	}
	return t.intern(x + y[1:]), true
}

var initial = 0

func read(path string) ([]porcupine.Operation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vals = &table{ids: map[string]int{"null": 0}, texts: []string{"null"}}
	initial = 0
	pending := map[string]*open{}
	var ops []porcupine.Operation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	pos := int64(0)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, pos+1, err)
		}
		pos++
		proc := string(ev.Process)
		if proc == `"nemesis"` {
			continue
		}
		if ev.Type == "invoke" {
			o := &open{key: string(ev.Key)}
			o.op.Call = pos
			switch ev.F {
			case "read", "get":
				o.in.kind = opRead
			case "write", "put":
				o.in.kind = opWrite
				o.in.a = vals.id(ev.Value)
			case "append":
				o.in.kind = opAppend
				o.in.a = vals.id(ev.Value)
				initial = vals.intern("s")
			case "cas":
				var ft []json.RawMessage
				if err := json.Unmarshal(ev.Value, &ft); err != nil || len(ft) != 2 {
					return nil, fmt.Errorf("%s:%d: cas value must be [from, to]", path, pos)
				}
				o.in.kind = opCas
				o.in.a, o.in.b = vals.id(ft[0]), vals.id(ft[1])
			default:
				return nil, fmt.Errorf("%s:%d: no operation %q in a register", path, pos, ev.F)
			}
			pending[proc] = o
			continue
		}
		o := pending[proc]
		if o == nil {
			return nil, fmt.Errorf("%s:%d: a completion without an invocation", path, pos)
		}
		delete(pending, proc)
		switch ev.Type {
		case "ok":
			o.op.Return = pos
			if o.in.kind == opRead {
				o.op.Output = output{vals.id(ev.Value)}
			} else {
				o.op.Output = output{}
			}
		case "fail":
			if !(ev.CompareFailed && o.in.kind == opCas) {
				continue // did not happen
			}
			o.in.failed = true
			o.op.Return = pos
			o.op.Output = output{}
		default: // info
			if !crash(o) {
				continue
			}
		}
		ops = append(ops, o.done())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, o := range pending { // never completed: crashed
		if crash(o) {
			ops = append(ops, o.done())
		}
	}
	return ops, nil
}

// crash makes o a crashed op: it returns at infinity with an unknown outcome; false for a
// read, which constrains nothing then and is dropped
func crash(o *open) bool {
	if o.in.kind == opRead {
		return false
	}
	o.in.unknown = true
	o.op.Return = infinity
	o.op.Output = output{}
	return true
}

func (o *open) done() porcupine.Operation {
	o.op.Input = o.in
	o.op.Metadata = o.key
	return o.op
}

func byKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Metadata.(string)
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

var register = porcupine.Model{
	Partition: byKey,
	Init:      func() interface{} { return initial },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		s, i := state.(int), in.(input)
		switch i.kind {
		case opRead:
			return out.(output).value == s, s
		case opWrite:
			return true, i.a
		case opAppend:
			n, ok := vals.appended(s, i.a)
			return ok, n
		default:
			if i.failed {
				return s != i.a, s
			}
			if s == i.a {
				return true, i.b
			}
			return i.unknown, s
		}
	},
	Equal: func(a, b interface{}) bool { return a.(int) == b.(int) },
	Hash:  func(s interface{}) uint64 { return uint64(s.(int)) },
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func main() {
	repeat := envInt("PCHECK_REPEAT", 3)
	timeout := time.Duration(envInt("PCHECK_TIMEOUT_S", 60)) * time.Second
	status := 0
	for _, path := range os.Args[1:] {
		ops, err := read(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pcheck:", err)
			status = 3
			continue
		}
		best := time.Duration(1<<62 - 1)
		verdict := "unknown"
		for r := 0; r < repeat; r++ {
			start := time.Now()
			res := porcupine.CheckOperationsTimeout(register, ops, timeout)
			if d := time.Since(start); d < best {
				best = d
			}
			switch res {
			case porcupine.Ok:
				verdict = "valid"
			case porcupine.Illegal:
				verdict = "INVALID"
			default:
				verdict = "unknown"
			}
			if verdict == "unknown" {
				break // its budget is spent: once is enough
			}
		}
		fmt.Printf("%s\t%.6f\t%s\n", path, best.Seconds(), verdict)
	}
	os.Exit(status)
}
