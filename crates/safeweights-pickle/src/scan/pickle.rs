//! Simulates a pickle's stack and memo to find every global it would
//! import, without building or running anything.
//!
//! Unlike the VM it steps over refused opcodes (reporting them), so code
//! hidden behind INST, OBJ or POP is still seen, and it keeps what it found
//! when the stream later breaks (the "break after payload" trick).
//!
//! When the simulation stops early, the verdict only gets worse: a stop
//! where CPython's unpickler would raise too (an unknown opcode, truncated
//! data, a memo miss, a stack underflow) ends the pickle as "malformed";
//! a stop where CPython could go on (a limit of ours, a global whose name
//! is computed at load time) is *dangerous*, because the unseen rest may
//! run code.

use std::collections::HashMap;
use std::rc::Rc;

use super::danger::{classify, is_loads_like};
use super::text::{py_int, raw_unicode_escape, string_operand};
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
    /// What a call, a persistent id or an extension code returned: the
    /// scanner cannot know it (it may even be a string).
    Computed,
    /// A literal or container whose content the scanner does not need.
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

/// Why simulation of one pickle stopped before its STOP opcode.
struct Broken {
    offset: usize,
    why: String,
    /// CPython's unpickler would raise at the same point, so nothing after
    /// it runs. Otherwise the unpickler might go on where we could not.
    definite: bool,
}

/// What the data is known to be before it is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A pickle for sure (PROTO opcode, a `.pkl` member, a legacy header):
    /// any failure is reported.
    Pickle,
    /// Only perhaps a pickle (`pickle.load` needs no magic number): if it
    /// breaks where CPython would too before importing anything, no loader
    /// could run code from it and it is not reported.
    Guess,
}

/// Scans up to `count` consecutive pickles from `start` (stopping at the
/// end of the data or at the first that breaks), as repeated `pickle.load`
/// calls on one file read them: `first` says what the first is known to
/// be, `later` the others (`Start::Guess` for bare streams, so trailing
/// bytes that are no pickle are not reported).
pub(crate) fn scan_pickles(
    data: &[u8],
    start: usize,
    (first, later): (Start, Start),
    count: usize,
    sink: &mut Sink<'_>,
) -> Scanned {
    let mut pos = start;
    for i in 0..count {
        // Per pickle, as the reader counts: the total is bounded anyway,
        // since every opcode consumes at least one byte.
        let mut budget = sink.limits.max_ops;
        if i > 0 && pos >= data.len() {
            break;
        }
        let kind = if i == 0 { first } else { later };
        let mut trial = sink.trial();
        let mut sim = Sim::new(data, &mut trial);
        let result = sim.run(pos, &mut budget);
        let imported = sim.imported;
        match result {
            Ok(end) => {
                sink.commit(trial);
                pos = end;
            }
            Err(b) if b.definite && !imported && kind == Start::Guess => {
                return if i == 0 {
                    Scanned::NotPickle
                } else {
                    Scanned::Complete(pos)
                };
            }
            Err(b) => {
                sink.commit(trial);
                report_stop(b, sink);
                return Scanned::Broken;
            }
        }
    }
    Scanned::Complete(pos)
}

/// How a run of [`scan_pickles`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// The first pickle was a guess, and no pickle.
    NotPickle,
    /// Every pickle ended with STOP; the offset after the last one.
    Complete(usize),
    /// A pickle broke (reported).
    Broken,
}

fn report_stop(b: Broken, sink: &mut Sink<'_>) {
    if b.definite {
        sink.add(Finding::new(
            "malformed pickle",
            b.offset,
            Verdict::Suspicious,
            format!(
                "{}; an unpickler would fail here only after running everything before it",
                b.why
            ),
        ));
    } else {
        sink.add(Finding::new(
            "pickle not fully simulated",
            b.offset,
            Verdict::Dangerous,
            format!(
                "{}; an unpickler would go on, and what follows may run code",
                b.why
            ),
        ));
    }
}

struct Sim<'d, 's, 'f> {
    data: &'d [u8],
    sink: &'s mut Sink<'f>,
    stack: Vec<SVal>,
    marks: Vec<usize>,
    memo: HashMap<u64, SVal>,
    /// Whether an opcode that imports (GLOBAL, STACK_GLOBAL, INST, EXT*)
    /// was seen: from then on a broken stream may already have run code.
    imported: bool,
}

impl<'d, 's, 'f> Sim<'d, 's, 'f> {
    fn new(data: &'d [u8], sink: &'s mut Sink<'f>) -> Self {
        Sim {
            data,
            sink,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            imported: false,
        }
    }

    /// Simulates one pickle from `start`; returns the offset after STOP.
    /// Each opcode costs one unit of the caller's `budget`.
    fn run(&mut self, start: usize, budget: &mut u64) -> Result<usize, Broken> {
        let limits = self.sink.limits.clone();
        let mut pos = start;
        loop {
            if *budget == 0 {
                return Err(Broken {
                    offset: pos,
                    why: format!("stopped after {} opcodes (max_ops)", limits.max_ops),
                    definite: false,
                });
            }
            *budget -= 1;
            let ins = ops::decode(self.data, pos, limits.max_string_len).map_err(|e| Broken {
                offset: pos,
                // Our string-length cap is not CPython's.
                definite: !matches!(e, crate::Error::LimitExceeded { .. }),
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
                return Err(Broken {
                    definite: false,
                    ..broken(&ins, "stack or memo limit exceeded")
                });
            }
        }
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

    /// Reports an import. A module name no import could find (NUL bytes,
    /// spaces, punctuation: what binary data read as GLOBAL looks like)
    /// stops the unpickler with an ImportError, so it ends the pickle.
    fn global(&mut self, module: &str, name: &str, ins: &Instr<'_>) -> Result<SVal, Broken> {
        if !importable(module) {
            return Err(broken(ins, "a module name no import can find"));
        }
        self.imported = true;
        let (verdict, reason) = classify(module, name);
        let shown = format!("{module}.{name}");
        self.sink
            .add(Finding::new(shown, ins.offset, verdict, reason));
        Ok(SVal::Global(Rc::new((module.to_owned(), name.to_owned()))))
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
                )?;
                if ins.op.byte == ops::INST {
                    self.pop_mark(ins)?;
                    SVal::Computed
                } else {
                    g
                }
            }
            (ops::STACK_GLOBAL, _) => {
                let name = self.pop(ins)?;
                let module = self.pop(ins)?;
                match (module, name) {
                    (SVal::Str(m), SVal::Str(n)) => self.global(&m, &n, ins)?,
                    (SVal::Computed, _) | (_, SVal::Computed) => {
                        self.imported = true;
                        self.sink.add(Finding::new(
                            "global with a computed name",
                            ins.offset,
                            Verdict::Dangerous,
                            "STACK_GLOBAL imports a module or name returned by a call made while loading; it can be anything",
                        ));
                        SVal::Computed
                    }
                    _ => return Err(broken(ins, "STACK_GLOBAL operands are not strings")),
                }
            }
            (ops::REDUCE | ops::NEWOBJ, _) => {
                let args = self.pop(ins)?;
                let callable = self.pop(ins)?;
                self.maybe_nested(&callable, &args, ins);
                SVal::Computed
            }
            (ops::NEWOBJ_EX, _) => {
                self.pop_n(ins, 3)?;
                SVal::Computed
            }
            (ops::OBJ, _) => {
                self.pop_mark(ins)?;
                SVal::Computed
            }
            (ops::EXT1 | ops::EXT2 | ops::EXT4, _) => {
                // The copyreg extension registry maps a code to a global, and
                // it is empty in a standard interpreter (nothing in the
                // standard library, torch or numpy registers a code): there
                // the unpickler raises here, before importing anything. The
                // opcode itself is reported above, for pickles known to be
                // pickles; data that only might be one (a safetensors header
                // length whose low byte is 0x82..0x84) is no pickle.
                return Err(broken(
                    ins,
                    "unregistered extension code (copyreg's registry is empty)",
                ));
            }
            (ops::BUILD | ops::APPEND, _) => return self.pop(ins).map(drop),
            (ops::BINPERSID, _) => {
                // torch's legacy persistent_load returns part of the id
                // itself (a string, even), so the result is unknown.
                self.pop(ins)?;
                SVal::Computed
            }
            (ops::PERSID, _) => SVal::Computed,
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
                let key = u64::try_from(key).map_err(|_| broken(ins, "memo entry never stored"))?;
                self.memo
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| broken(ins, "memo entry never stored"))?
            }
            (ops::PUT | ops::BINPUT | ops::LONG_BINPUT | ops::MEMOIZE, arg) => {
                let key = match ins.op.byte {
                    ops::MEMOIZE => self.memo.len() as u64,
                    _ => memo_key(arg)
                        .and_then(|k| u64::try_from(k).ok())
                        .ok_or_else(|| broken(ins, "bad or negative memo index"))?,
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
            (ops::STRING, Arg::Line(l)) => {
                let bytes = string_operand(l)
                    .ok_or_else(|| broken(ins, "STRING operand badly quoted or escaped"))?;
                SVal::Str(String::from_utf8_lossy(&bytes).into())
            }
            (ops::UNICODE, Arg::Line(l)) => SVal::Str(
                raw_unicode_escape(l)
                    .ok_or_else(|| broken(ins, "bad escape in UNICODE operand"))?
                    .into(),
            ),
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
                scan_pickles(&inner, 0, (Start::Pickle, Start::Guess), 1, sink);
            });
        }
    }
}

fn broken(ins: &Instr<'_>, why: &str) -> Broken {
    Broken {
        offset: ins.offset,
        why: format!("{why} at {}", ins.op.name),
        definite: true,
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

/// Whether `module` could name an importable module: dotted words of
/// letters, digits and underscores (any alphabet, as Python identifiers).
fn importable(module: &str) -> bool {
    !module.is_empty()
        && module
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// A memo index as CPython reads it (text keys through `int()` rules).
fn memo_key(arg: Arg<'_>) -> Option<i64> {
    match arg {
        Arg::Int(i) => Some(i),
        Arg::Line(l) => py_int(l),
        _ => None,
    }
}
