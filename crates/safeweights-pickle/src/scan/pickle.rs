//! Simulates a pickle's stack and memo to find every global it would
//! import, without building or running anything.
//!
//! Unlike the VM it steps over refused opcodes (reporting them), so code
//! hidden behind INST, OBJ or POP is still seen, and it keeps what it found
//! when the stream later breaks (the "break after payload" trick).

use std::collections::HashMap;
use std::rc::Rc;

use super::danger::{classify, is_loads_like};
use super::{Finding, Sink, Verdict};
use crate::pickle::ops::{self, Arg, Instr};

/// What the scanner tracks about a stack value.
#[derive(Debug, Clone)]
enum SVal {
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// A global: (module, name).
    Global(Rc<(String, String)>),
    /// A tuple's elements, flattened one level (nested tuples become
    /// `Other`) so a hostile nesting depth costs nothing to drop.
    Tuple(Rc<[SVal]>),
    Other,
}

/// Opcodes the safe VM executes; everything else is reported.
const VM_OPCODES: &[u8] = &[
    ops::PROTO,
    ops::STOP,
    ops::FRAME,
    ops::MARK,
    ops::GLOBAL,
    ops::STACK_GLOBAL,
    ops::BINPERSID,
    ops::REDUCE,
    ops::BUILD,
    ops::NEWOBJ,
    ops::TUPLE,
    ops::TUPLE1,
    ops::TUPLE2,
    ops::TUPLE3,
    ops::EMPTY_TUPLE,
    ops::EMPTY_LIST,
    ops::APPEND,
    ops::APPENDS,
    ops::EMPTY_DICT,
    ops::SETITEM,
    ops::SETITEMS,
    ops::EMPTY_SET,
    ops::ADDITEMS,
    ops::NONE,
    ops::NEWTRUE,
    ops::NEWFALSE,
    ops::BININT,
    ops::BININT1,
    ops::BININT2,
    ops::LONG1,
    ops::BINFLOAT,
    ops::BINUNICODE,
    ops::SHORT_BINUNICODE,
    ops::BINUNICODE8,
    ops::SHORT_BINSTRING,
    ops::BINBYTES,
    ops::SHORT_BINBYTES,
    ops::BINGET,
    ops::LONG_BINGET,
    ops::BINPUT,
    ops::LONG_BINPUT,
    ops::MEMOIZE,
];

/// Why simulation of one pickle stopped early.
struct Broken {
    offset: usize,
    why: String,
}

/// Scans consecutive pickles starting at `start`: at most `max_pickles`,
/// continuing while the next byte is a PROTO opcode. Returns the offset
/// after the last complete pickle.
pub(crate) fn scan_pickles(
    data: &[u8],
    start: usize,
    max_pickles: usize,
    sink: &mut Sink<'_>,
) -> usize {
    let mut pos = start;
    for i in 0..max_pickles {
        if i > 0 && data.get(pos) != Some(&ops::PROTO) {
            break;
        }
        match Sim::new(data, sink).run(pos) {
            Ok(end) => pos = end,
            Err(b) => {
                sink.add(Finding::new(
                    "malformed pickle",
                    b.offset,
                    Verdict::Suspicious,
                    format!(
                        "{}; an unpickler would fail here only after running everything before it",
                        b.why
                    ),
                ));
                return data.len();
            }
        }
    }
    pos
}

struct Sim<'d, 's, 'f> {
    data: &'d [u8],
    sink: &'s mut Sink<'f>,
    stack: Vec<SVal>,
    marks: Vec<usize>,
    memo: HashMap<u64, SVal>,
}

impl<'d, 's, 'f> Sim<'d, 's, 'f> {
    fn new(data: &'d [u8], sink: &'s mut Sink<'f>) -> Self {
        Sim {
            data,
            sink,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn run(&mut self, start: usize) -> Result<usize, Broken> {
        let limits = self.sink.limits.clone();
        let mut pos = start;
        for _ in 0..limits.max_ops {
            let ins = ops::decode(self.data, pos, limits.max_string_len).map_err(|e| Broken {
                offset: pos,
                why: e.to_string(),
            })?;
            pos = ins.end;
            if !VM_OPCODES.contains(&ins.op.byte) {
                self.sink.add(Finding::new(
                    format!("opcode {}", ins.op.name),
                    ins.offset,
                    Verdict::Suspicious,
                    "refused by the safe reader: not needed for weights, and can call or hide code",
                ));
            }
            if ins.op.byte == ops::STOP {
                self.pop(&ins)?;
                return Ok(pos);
            }
            self.step(&ins)?;
            if self.stack.len() + self.marks.len() > limits.max_stack
                || self.memo.len() > limits.max_memo
            {
                return Err(broken(&ins, "stack or memo limit exceeded"));
            }
        }
        Err(Broken {
            offset: pos,
            why: format!("stopped after {} opcodes (max_ops)", limits.max_ops),
        })
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, ins: &Instr<'_>) -> Result<SVal, Broken> {
        if self.stack.len() <= self.floor() {
            return Err(broken(ins, "stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| broken(ins, "stack underflow"))
    }

    fn pop_n(&mut self, ins: &Instr<'_>, n: usize) -> Result<Vec<SVal>, Broken> {
        let split = self
            .stack
            .len()
            .checked_sub(n)
            .filter(|&s| s >= self.floor());
        let split = split.ok_or_else(|| broken(ins, "stack underflow"))?;
        Ok(self.stack.split_off(split))
    }

    fn pop_mark(&mut self, ins: &Instr<'_>) -> Result<Vec<SVal>, Broken> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| broken(ins, "no MARK to pop to"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn global(&mut self, module: &str, name: &str, ins: &Instr<'_>) -> SVal {
        let (verdict, reason) = classify(module, name);
        let shown = format!("{module}.{name}");
        self.sink
            .add(Finding::new(shown, ins.offset, verdict, reason));
        SVal::Global(Rc::new((module.to_owned(), name.to_owned())))
    }

    fn step(&mut self, ins: &Instr<'_>) -> Result<(), Broken> {
        let value = match (ins.op.byte, ins.arg) {
            (ops::PROTO | ops::FRAME | ops::READONLY_BUFFER, _) => return Ok(()),
            (ops::MARK, _) => {
                self.marks.push(self.stack.len());
                return Ok(());
            }
            (ops::POP, _) => {
                // Python pops the mark when the current stack is empty.
                if self.stack.len() > self.floor() {
                    self.stack.pop();
                } else {
                    self.pop_mark(ins)?;
                }
                return Ok(());
            }
            (ops::POP_MARK, _) => return self.pop_mark(ins).map(drop),
            (ops::DUP, _) => {
                let top = self.pop(ins)?;
                self.stack.push(top.clone());
                top
            }
            (ops::GLOBAL | ops::INST, Arg::TwoLines(m, n)) => {
                let g = self.global(
                    &String::from_utf8_lossy(m),
                    &String::from_utf8_lossy(n),
                    ins,
                );
                if ins.op.byte == ops::INST {
                    self.pop_mark(ins)?;
                    SVal::Other
                } else {
                    g
                }
            }
            (ops::STACK_GLOBAL, _) => {
                let name = self.pop(ins)?;
                let module = self.pop(ins)?;
                match (module, name) {
                    (SVal::Str(m), SVal::Str(n)) => self.global(&m, &n, ins),
                    _ => return Err(broken(ins, "STACK_GLOBAL operands are not strings")),
                }
            }
            (ops::REDUCE | ops::NEWOBJ, _) => {
                let args = self.pop(ins)?;
                let callable = self.pop(ins)?;
                self.maybe_nested(&callable, &args, ins);
                SVal::Other
            }
            (ops::NEWOBJ_EX, _) => {
                self.pop_n(ins, 3)?;
                SVal::Other
            }
            (ops::OBJ, _) => {
                self.pop_mark(ins)?;
                SVal::Other
            }
            (ops::BUILD | ops::APPEND, _) => return self.pop(ins).map(drop),
            (ops::BINPERSID, _) => {
                self.pop(ins)?;
                SVal::Other
            }
            (ops::SETITEM, _) => return self.pop_n(ins, 2).map(drop),
            (ops::APPENDS | ops::SETITEMS | ops::ADDITEMS, _) => {
                return self.pop_mark(ins).map(drop)
            }
            (ops::TUPLE, _) => tuple(self.pop_mark(ins)?),
            (ops::TUPLE1 | ops::TUPLE2 | ops::TUPLE3, _) => {
                tuple(self.pop_n(ins, usize::from(ins.op.byte - ops::TUPLE1) + 1)?)
            }
            (ops::LIST | ops::DICT | ops::FROZENSET, _) => {
                self.pop_mark(ins)?;
                SVal::Other
            }
            (ops::GET | ops::BINGET | ops::LONG_BINGET, arg) => {
                let key = memo_key(arg).ok_or_else(|| broken(ins, "bad memo index"))?;
                self.memo
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| broken(ins, "memo entry never stored"))?
            }
            (ops::PUT | ops::BINPUT | ops::LONG_BINPUT | ops::MEMOIZE, arg) => {
                let key = match ins.op.byte {
                    ops::MEMOIZE => self.memo.len() as u64,
                    _ => memo_key(arg).ok_or_else(|| broken(ins, "bad memo index"))?,
                };
                let top = self
                    .stack
                    .last()
                    .cloned()
                    .ok_or_else(|| broken(ins, "memoizing an empty stack"))?;
                self.memo.insert(key, top);
                return Ok(());
            }
            (
                ops::SHORT_BINUNICODE
                | ops::BINUNICODE
                | ops::BINUNICODE8
                | ops::SHORT_BINSTRING
                | ops::BINSTRING,
                Arg::Bytes(b),
            ) => SVal::Str(String::from_utf8_lossy(b).into()),
            (ops::STRING, Arg::Line(l)) => SVal::Str(unquote(l).into()),
            (ops::UNICODE, Arg::Line(l)) => SVal::Str(String::from_utf8_lossy(l).into()),
            (
                ops::BINBYTES | ops::SHORT_BINBYTES | ops::BINBYTES8 | ops::BYTEARRAY8,
                Arg::Bytes(b),
            ) => SVal::Bytes(Rc::from(b)),
            // Literals, empty containers, persistent ids, extension codes
            // and out-of-band buffers: an opaque value either way.
            _ => SVal::Other,
        };
        self.stack.push(value);
        Ok(())
    }

    /// `pickle.loads(b"...")`: scan the inner pickle too.
    fn maybe_nested(&mut self, callable: &SVal, args: &SVal, ins: &Instr<'_>) {
        let (SVal::Global(g), SVal::Tuple(items)) = (callable, args) else {
            return;
        };
        if !is_loads_like(&g.0, &g.1) {
            return;
        }
        if let Some(SVal::Bytes(inner)) = items.first() {
            let label = format!(
                "nested pickle passed to {}.{} at offset {}",
                g.0, g.1, ins.offset
            );
            let inner = inner.clone();
            self.sink.nested(&label, |sink| {
                scan_pickles(&inner, 0, 1, sink);
            });
        }
    }
}

fn broken(ins: &Instr<'_>, why: &str) -> Broken {
    Broken {
        offset: ins.offset,
        why: format!("{why} at {}", ins.op.name),
    }
}

fn tuple(items: Vec<SVal>) -> SVal {
    let flat: Vec<SVal> = items
        .into_iter()
        .map(|v| {
            if matches!(v, SVal::Tuple(_)) {
                SVal::Other
            } else {
                v
            }
        })
        .collect();
    SVal::Tuple(flat.into())
}

fn memo_key(arg: Arg<'_>) -> Option<u64> {
    match arg {
        Arg::Int(i) => u64::try_from(i).ok(),
        Arg::Line(l) => std::str::from_utf8(l).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Protocol 0 STRING arguments are quoted reprs.
fn unquote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let t = text.trim();
    let inner = t
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| t.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
        .unwrap_or(t);
    inner.to_owned()
}
