//! The safe pickle VM: an allow-list of opcodes, an allow-list of globals,
//! hard limits, and no code execution of any kind.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::globals::{self, Global};
use super::obj::{teardown, Freezer, Obj};
use super::ops::{self, Arg, Instr};
use super::value::{StorageRef, Value};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Which globals and persistent ids a pickle may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Plain literals only: no globals, no persistent ids. Used for the
    /// header values of legacy checkpoints.
    Literals,
    /// The torch weights-only allow-list; persistent ids are zip-format
    /// storages `('storage', type, key, location, numel)`.
    Torch,
    /// As `Torch`, with legacy persistent ids that carry view metadata.
    TorchLegacy,
}

/// What running one pickle produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The value the pickle built.
    pub value: Value,
    /// Offset just past the STOP opcode (legacy files hold several pickles).
    pub end: usize,
    /// Every storage its persistent ids referenced, in order of appearance.
    pub storages: Vec<Arc<StorageRef>>,
}

/// Runs the pickle starting at `start` on the safe VM.
pub fn load_pickle(data: &[u8], start: usize, limits: &Limits, policy: Policy) -> Result<Loaded> {
    let mut vm = Vm {
        storages: Vec::new(),
        data,
        limits,
        policy,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        frame_end: None,
    };
    let result = vm.run(start);
    let (obj, end) = match result {
        Ok(ok) => ok,
        Err(e) => {
            vm.release();
            return Err(e);
        }
    };
    let frozen = Freezer::new(limits).freeze(&obj);
    vm.stack.push(obj);
    vm.release();
    Ok(Loaded {
        value: frozen?,
        end,
        storages: vm.storages,
    })
}

struct Vm<'a> {
    data: &'a [u8],
    limits: &'a Limits,
    policy: Policy,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u64, Obj>,
    frame_end: Option<usize>,
    storages: Vec<Arc<StorageRef>>,
}

impl Vm<'_> {
    fn release(&mut self) {
        let mut all = std::mem::take(&mut self.stack);
        all.extend(std::mem::take(&mut self.memo).into_values());
        teardown(all);
    }

    fn run(&mut self, start: usize) -> Result<(Obj, usize)> {
        let mut pos = start;
        let mut count = 0u64;
        loop {
            count += 1;
            if count > self.limits.max_ops {
                return Err(Error::limit("max_ops", self.limits.max_ops, pos));
            }
            let ins = ops::decode(self.data, pos, self.limits.max_string_len)?;
            self.check_frame(&ins)?;
            pos = ins.end;
            if ins.op.byte == ops::STOP {
                return Ok((self.pop(ins.offset)?, pos));
            }
            self.step(&ins)?;
            if self.stack.len() + self.marks.len() > self.limits.max_stack {
                return Err(Error::limit(
                    "max_stack",
                    self.limits.max_stack as u64,
                    ins.offset,
                ));
            }
        }
    }

    /// Frames are only a buffering hint, but an opcode straddling a frame
    /// boundary or a frame longer than the data means a corrupt stream.
    fn check_frame(&mut self, ins: &Instr<'_>) -> Result<()> {
        if let Some(end) = self.frame_end {
            if ins.offset >= end {
                self.frame_end = None;
            } else if ins.end > end {
                return Err(Error::pickle(
                    ins.offset,
                    "opcode crosses the end of its FRAME",
                ));
            } else if ins.op.byte == ops::FRAME {
                return Err(Error::pickle(
                    ins.offset,
                    "FRAME inside an unfinished FRAME",
                ));
            }
        }
        if let (ops::FRAME, Arg::Int(len)) = (ins.op.byte, ins.arg) {
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| ins.end.checked_add(len))
                .filter(|&end| end <= self.data.len())
                .ok_or_else(|| {
                    Error::pickle(ins.offset, "FRAME length runs past the end of data")
                })?;
            self.frame_end = Some(end);
        }
        Ok(())
    }

    fn step(&mut self, ins: &Instr<'_>) -> Result<()> {
        let at = ins.offset;
        let obj = match (ins.op.byte, ins.arg) {
            (ops::PROTO, Arg::Int(p)) if p <= 5 => return Ok(()),
            (ops::PROTO, _) => return Err(Error::pickle(at, "unsupported protocol")),
            (ops::FRAME, _) => return Ok(()),
            (ops::MARK, _) => {
                self.marks.push(self.stack.len());
                return Ok(());
            }
            (ops::GLOBAL, Arg::TwoLines(m, n)) => {
                Obj::Global(self.global(text(m, at)?, text(n, at)?, at)?)
            }
            (ops::STACK_GLOBAL, _) => {
                let name = self.pop(at)?;
                let module = self.pop(at)?;
                match (module, name) {
                    (Obj::Str(m), Obj::Str(n)) => Obj::Global(self.global(&m, &n, at)?),
                    _ => return Err(Error::pickle(at, "STACK_GLOBAL operands must be strings")),
                }
            }
            (ops::BINPERSID, _) => {
                let pid = self.pop(at)?;
                let storage = self.persistent(&pid, at)?;
                self.storages.push(storage.clone());
                Obj::Storage(storage)
            }
            (ops::REDUCE, _) | (ops::NEWOBJ, _) => {
                let args = self.pop(at)?;
                let callable = self.pop(at)?;
                self.call(ins.op.byte, callable, args, at)?
            }
            (ops::BUILD, _) => {
                let state = self.pop(at)?;
                // BUILD only sets attributes (an OrderedDict's `_metadata`,
                // a parameter's python state); none of them is tensor data.
                // A recorded object keeps its state for the caller.
                match self.stack.last() {
                    Some(Obj::Object(cell)) => {
                        let mut object = cell
                            .try_borrow_mut()
                            .map_err(|_| Error::pickle(at, "object in use"))?;
                        if object.state.is_some() {
                            return Err(Error::pickle(at, "BUILD twice on one object"));
                        }
                        object.state = Some(state);
                        return Ok(());
                    }
                    Some(Obj::Dict(cell)) => {
                        let mut dict = cell
                            .try_borrow_mut()
                            .map_err(|_| Error::pickle(at, "dict in use"))?;
                        if dict.ordered && dict.state.is_none() {
                            dict.state = Some(state);
                        } else {
                            teardown(vec![state]);
                        }
                        return Ok(());
                    }
                    Some(Obj::Tensor(_)) => {
                        teardown(vec![state]);
                        return Ok(());
                    }
                    Some(other) => {
                        return Err(Error::pickle(
                            at,
                            format!("BUILD on a {}", other.type_name()),
                        ))
                    }
                    None => return Err(Error::pickle(at, "BUILD on an empty stack")),
                }
            }
            (ops::EMPTY_TUPLE, _) => Obj::Tuple(Rc::new(Vec::new())),
            (ops::TUPLE, _) => Obj::Tuple(Rc::new(self.pop_mark(at)?)),
            (ops::TUPLE1 | ops::TUPLE2 | ops::TUPLE3, _) => {
                let n = usize::from(ins.op.byte - ops::TUPLE1) + 1;
                let split = self.floor().max(self.stack.len().saturating_sub(n));
                if self.stack.len() - split != n {
                    return Err(Error::pickle(at, "stack underflow"));
                }
                Obj::Tuple(Rc::new(self.stack.split_off(split)))
            }
            (ops::EMPTY_LIST, _) => Obj::new_list(Vec::new()),
            (ops::EMPTY_DICT, _) => Obj::new_dict(),
            (ops::EMPTY_SET, _) => Obj::new_set(Vec::new()),
            (ops::APPEND, _) => {
                let item = self.pop(at)?;
                return self.extend(vec![item], at);
            }
            (ops::APPENDS | ops::ADDITEMS, _) => {
                let items = self.pop_mark(at)?;
                return self.extend(items, at);
            }
            (ops::SETITEM, _) => {
                let value = self.pop(at)?;
                let key = self.pop(at)?;
                return self.set_items(vec![key, value], at);
            }
            (ops::SETITEMS, _) => {
                let items = self.pop_mark(at)?;
                return self.set_items(items, at);
            }
            (ops::NONE, _) => Obj::None,
            (ops::NEWTRUE, _) => Obj::Bool(true),
            (ops::NEWFALSE, _) => Obj::Bool(false),
            (ops::BININT | ops::BININT1 | ops::BININT2, Arg::Int(i)) => Obj::Int(i),
            (ops::LONG1, Arg::Bytes(b)) => long(b),
            (ops::BINFLOAT, Arg::Float(f)) => Obj::Float(f),
            (
                ops::BINUNICODE | ops::SHORT_BINUNICODE | ops::BINUNICODE8 | ops::SHORT_BINSTRING,
                Arg::Bytes(b),
            ) => Obj::Str(Rc::from(text(b, at)?)),
            (ops::BINBYTES | ops::SHORT_BINBYTES, Arg::Bytes(b)) => Obj::Bytes(Rc::from(b)),
            (ops::BINGET | ops::LONG_BINGET, Arg::Int(i)) => self
                .memo
                .get(&(i as u64))
                .cloned()
                .ok_or_else(|| Error::pickle(at, format!("memo entry {i} was never stored")))?,
            (ops::BINPUT | ops::LONG_BINPUT, Arg::Int(i)) => return self.memoize(i as u64, at),
            (ops::MEMOIZE, _) => return self.memoize(self.memo.len() as u64, at),
            _ => {
                return Err(Error::RefusedOpcode {
                    name: ins.op.name,
                    byte: ins.op.byte,
                    offset: at as u64,
                })
            }
        };
        self.stack.push(obj);
        Ok(())
    }

    /// Lowest stack index the current mark allows popping to.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, at: usize) -> Result<Obj> {
        if self.stack.len() <= self.floor() {
            return Err(Error::pickle(at, "stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| Error::pickle(at, "stack underflow"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Obj>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| Error::pickle(at, "opcode needs a MARK but none is set"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memoize(&mut self, index: u64, at: usize) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| Error::pickle(at, "memoizing an empty stack"))?;
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&index) {
            return Err(Error::limit("max_memo", self.limits.max_memo as u64, at));
        }
        if let Some(old) = self.memo.insert(index, top) {
            teardown(vec![old]);
        }
        Ok(())
    }

    fn global(&self, module: &str, name: &str, at: usize) -> Result<Global> {
        let refused = || Error::RefusedGlobal {
            module: module.to_owned(),
            name: name.to_owned(),
            offset: at as u64,
        };
        if self.policy == Policy::Literals {
            return Err(refused());
        }
        Global::resolve_with(module, name, &self.limits.allowed_classes).ok_or_else(refused)
    }

    fn call(&mut self, op: u8, callable: Obj, args: Obj, at: usize) -> Result<Obj> {
        let Obj::Tuple(args) = args else {
            return Err(Error::pickle(
                at,
                format!("call arguments must be a tuple, got {}", args.type_name()),
            ));
        };
        let Obj::Global(global) = callable else {
            return Err(Error::pickle(
                at,
                format!("calling a {}", callable.type_name()),
            ));
        };
        if op == ops::NEWOBJ {
            // cls.__new__(cls, *args): only empty containers and sizes.
            return match global {
                Global::OrderedDict => Ok(Obj::new_ordered_dict()),
                Global::Set => Ok(Obj::new_set(Vec::new())),
                Global::Size => globals::call(&global, &args, at),
                g if g.is_recorded() => Ok(Obj::new_object(g.name(), true, args.to_vec())),
                _ => Err(Error::pickle(at, format!("NEWOBJ on {}", global.name()))),
            };
        }
        globals::call(&global, &args, at)
    }

    /// Refuses to grow a container of `len` items by `adding` past
    /// `max_container_len`.
    fn check_growth(&self, len: usize, adding: usize, at: usize) -> Result<()> {
        let max = self.limits.max_container_len;
        if len.saturating_add(adding) > max {
            return Err(Error::limit("max_container_len", max as u64, at));
        }
        Ok(())
    }

    fn extend(&mut self, items: Vec<Obj>, at: usize) -> Result<()> {
        if let Some(Obj::Object(object)) = self.stack.last() {
            let mut object = object
                .try_borrow_mut()
                .map_err(|_| Error::pickle(at, "object in use"))?;
            self.check_growth(object.items.len(), items.len(), at)?;
            object.items.extend(items);
            return Ok(());
        }
        let cell = match self.stack.last() {
            Some(Obj::List(cell) | Obj::Set(cell)) => cell.clone(),
            other => {
                let what = other.map_or("nothing", Obj::type_name);
                return Err(Error::pickle(at, format!("appending to a {what}")));
            }
        };
        let mut target = cell
            .try_borrow_mut()
            .map_err(|_| Error::pickle(at, "container in use"))?;
        self.check_growth(target.len(), items.len(), at)?;
        target.extend(items);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Obj>, at: usize) -> Result<()> {
        let odd = || Error::pickle(at, "SETITEMS with an odd number of items");
        if let Some(Obj::Object(object)) = self.stack.last() {
            if !items.len().is_multiple_of(2) {
                return Err(odd());
            }
            let mut object = object
                .try_borrow_mut()
                .map_err(|_| Error::pickle(at, "object in use"))?;
            self.check_growth(object.dict_items.len(), items.len() / 2, at)?;
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                object.dict_items.push((k, v));
            }
            return Ok(());
        }
        let Some(Obj::Dict(cell)) = self.stack.last().cloned() else {
            return Err(Error::pickle(at, "SETITEM(S) target is not a dict"));
        };
        if !items.len().is_multiple_of(2) {
            return Err(odd());
        }
        let mut dict = cell
            .try_borrow_mut()
            .map_err(|_| Error::pickle(at, "dict in use"))?;
        self.check_growth(dict.items.len(), items.len() / 2, at)?;
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.set(k, v);
        }
        Ok(())
    }

    /// Interprets a persistent id; only storages are accepted.
    fn persistent(&self, pid: &Obj, at: usize) -> Result<Arc<StorageRef>> {
        let bad = |why: &str| Error::pickle(at, format!("persistent id {why}"));
        let Obj::Tuple(t) = pid else {
            return Err(bad("is not a tuple"));
        };
        let legacy = match self.policy {
            Policy::Literals => return Err(bad("is not allowed here (literals only)")),
            Policy::Torch => false,
            Policy::TorchLegacy => true,
        };
        match t.first() {
            Some(Obj::Str(kind)) if &**kind == "storage" => {}
            Some(Obj::Str(kind)) => {
                return Err(Error::checkpoint(format!(
                    "persistent id of kind `{kind}` at byte offset {at}: only storages are \
                     supported (`module` ids embed source code)"
                )))
            }
            _ => return Err(bad("has no kind")),
        }
        let (
            Some(Obj::Global(Global::StorageClass(scalar, _))),
            Some(Obj::Str(key)),
            Some(Obj::Str(location)),
            Some(Obj::Int(numel)),
        ) = (t.get(1), t.get(2), t.get(3), t.get(4))
        else {
            return Err(bad(
                "is not ('storage', storage class, key, location, numel)",
            ));
        };
        let numel = u64::try_from(*numel).map_err(|_| bad("has a negative numel"))?;
        let view = match (legacy, t.len(), t.get(5)) {
            (false, 5, _) | (true, 6, Some(Obj::None)) => None,
            (true, 6, Some(Obj::Tuple(v))) => {
                legacy_view(v, key).ok_or_else(|| bad("has bad view metadata"))?
            }
            _ => return Err(bad("has the wrong number of fields")),
        };
        Ok(Arc::new(StorageRef {
            key: Arc::from(&**key),
            scalar: *scalar,
            numel,
            location: Arc::from(&**location),
            view,
        }))
    }
}

/// `(view_key, offset, size)`: a view into the root storage. A view
/// covering the whole root (same key) is no view at all.
fn legacy_view(v: &[Obj], root: &str) -> Option<Option<(u64, u64)>> {
    match v {
        [Obj::Str(_), Obj::Int(off), Obj::Int(len)] => {
            Some(Some((u64::try_from(*off).ok()?, u64::try_from(*len).ok()?)))
        }
        [Obj::Str(k)] if &**k == root => Some(None),
        _ => None,
    }
}

fn text(b: &[u8], at: usize) -> Result<&str> {
    std::str::from_utf8(b).map_err(|_| Error::pickle(at, "string is not valid UTF-8"))
}

/// LONG1: little-endian two's complement of any length.
fn long(b: &[u8]) -> Obj {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        for (slot, &byte) in buf.iter_mut().zip(b) {
            *slot = byte;
        }
        Obj::Int(i64::from_le_bytes(buf))
    } else {
        Obj::BigInt(Rc::from(b))
    }
}
