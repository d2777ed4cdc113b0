//! Mutable objects on the VM stack and in the memo, and their conversion
//! ("freezing") into the immutable, shareable [`Value`] tree.
//!
//! Pickle mutates containers after memoizing them (EMPTY_LIST, BINPUT,
//! APPENDS), so the VM needs shared mutable cells. They are `Rc` based and
//! never leave the VM: freezing turns them into `Arc` values, keeping
//! sharing (one frozen copy per cell) and refusing cycles and deep nesting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::globals::Global;
use super::value::{ObjectValue, StorageRef, TensorRef, Value};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// A VM value.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Rc<[u8]>),
    Float(f64),
    Complex(f64, f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    ByteArray(Rc<[u8]>),
    Tuple(Rc<Vec<Obj>>),
    List(Rc<RefCell<Vec<Obj>>>),
    Dict(Rc<RefCell<DictObj>>),
    Set(Rc<RefCell<Vec<Obj>>>),
    Global(Global),
    Storage(Arc<StorageRef>),
    Tensor(Arc<TensorRef>),
    /// A call or instantiation of a recorded or allowed global.
    Object(Rc<RefCell<ObjectObj>>),
}

/// A recorded call (REDUCE) or instantiation (NEWOBJ) of a global, with
/// what BUILD, APPENDS and SETITEMS later gave it.
#[derive(Debug, Default)]
pub(crate) struct ObjectObj {
    pub(crate) global: String,
    pub(crate) new: bool,
    pub(crate) args: Vec<Obj>,
    pub(crate) state: Option<Obj>,
    pub(crate) items: Vec<Obj>,
    pub(crate) dict_items: Vec<(Obj, Obj)>,
}

impl Obj {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) | Obj::BigInt(_) => "int",
            Obj::Float(_) => "float",
            Obj::Complex(..) => "complex",
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::ByteArray(_) => "bytearray",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Set(_) => "set",
            Obj::Global(_) => "global",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
            Obj::Object(_) => "object",
        }
    }

    pub(crate) fn new_object(global: String, new: bool, args: Vec<Obj>) -> Obj {
        Obj::Object(Rc::new(RefCell::new(ObjectObj {
            global,
            new,
            args,
            ..ObjectObj::default()
        })))
    }

    pub(crate) fn new_dict() -> Obj {
        Obj::Dict(Rc::new(RefCell::new(DictObj::default())))
    }

    /// An empty `collections.OrderedDict`.
    pub(crate) fn new_ordered_dict() -> Obj {
        Obj::Dict(Rc::new(RefCell::new(DictObj::ordered())))
    }

    pub(crate) fn new_list(items: Vec<Obj>) -> Obj {
        Obj::List(Rc::new(RefCell::new(items)))
    }

    pub(crate) fn new_set(items: Vec<Obj>) -> Obj {
        Obj::Set(Rc::new(RefCell::new(items)))
    }
}

/// Dict keys that Python hashes by value; other keys are kept in order
/// without de-duplication (they cannot name tensors anyway).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

fn key_of(obj: &Obj) -> Option<Key> {
    match obj {
        Obj::None => Some(Key::None),
        Obj::Int(i) => Some(Key::Int(*i)),
        Obj::Bool(b) => Some(Key::Int(i64::from(*b))),
        Obj::Str(s) => Some(Key::Str(s.clone())),
        Obj::Bytes(b) => Some(Key::Bytes(b.clone())),
        _ => None,
    }
}

/// An insertion-ordered dict with Python's overwrite semantics.
#[derive(Debug, Default)]
pub(crate) struct DictObj {
    pub(crate) items: Vec<(Obj, Obj)>,
    index: HashMap<Key, usize>,
    /// A `collections.OrderedDict` (its type is kept, and BUILD's state:
    /// a state dict's `_metadata`).
    pub(crate) ordered: bool,
    pub(crate) state: Option<Obj>,
}

impl DictObj {
    /// An empty `collections.OrderedDict`.
    pub(crate) fn ordered() -> DictObj {
        DictObj {
            ordered: true,
            ..DictObj::default()
        }
    }

    /// Python `d[key] = value`: an existing key keeps its position.
    pub(crate) fn set(&mut self, key: Obj, value: Obj) {
        match key_of(&key) {
            Some(k) => match self.index.get(&k).and_then(|&i| self.items.get_mut(i)) {
                Some(slot) => slot.1 = value,
                None => {
                    self.index.insert(k, self.items.len());
                    self.items.push((key, value));
                }
            },
            None => self.items.push((key, value)),
        }
    }
}

/// Drops VM values without recursion. Rust's drop glue would recurse once
/// per nesting level, and a hostile pickle can nest a million levels deep
/// (also through cycles, which this breaks so nothing leaks).
pub(crate) fn teardown(roots: Vec<Obj>) {
    let mut work = roots;
    while let Some(obj) = work.pop() {
        match obj {
            Obj::Tuple(mut rc) => {
                if let Some(items) = Rc::get_mut(&mut rc) {
                    work.append(items);
                }
            }
            Obj::List(cell) | Obj::Set(cell) => {
                if let Ok(mut items) = cell.try_borrow_mut() {
                    work.append(&mut items);
                }
            }
            Obj::Dict(cell) => {
                if let Ok(mut dict) = cell.try_borrow_mut() {
                    for (k, v) in dict.items.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                    work.extend(dict.state.take());
                }
            }
            Obj::Object(cell) => {
                if let Ok(mut object) = cell.try_borrow_mut() {
                    work.append(&mut object.args);
                    work.append(&mut object.items);
                    work.extend(object.state.take());
                    for (k, v) in object.dict_items.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Converts VM objects into [`Value`]s, one frozen copy per shared cell.
pub(crate) struct Freezer<'l> {
    limits: &'l Limits,
    done: HashMap<usize, Value>,
    in_progress: Vec<usize>,
    nodes: u64,
}

impl<'l> Freezer<'l> {
    pub(crate) fn new(limits: &'l Limits) -> Self {
        Freezer {
            limits,
            done: HashMap::new(),
            in_progress: Vec::new(),
            nodes: 0,
        }
    }

    pub(crate) fn freeze(&mut self, obj: &Obj) -> Result<Value> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(Error::limit("max_nodes", self.limits.max_nodes, 0));
        }
        Ok(match obj {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::BigInt(b) => Value::BigInt(Arc::from(&**b)),
            Obj::Float(f) => Value::Float(*f),
            Obj::Complex(re, im) => Value::Complex(*re, *im),
            Obj::Str(s) => Value::Str(Arc::from(&**s)),
            Obj::Bytes(b) => Value::Bytes(Arc::from(&**b)),
            Obj::ByteArray(b) => Value::ByteArray(Arc::from(&**b)),
            Obj::Global(g) => match g {
                Global::Dtype(s) => Value::Dtype(*s),
                other => Value::Global(Arc::from(other.name())),
            },
            Obj::Storage(s) => Value::Storage(s.clone()),
            Obj::Tensor(t) => Value::Tensor(t.clone()),
            Obj::Tuple(rc) => {
                let id = Rc::as_ptr(rc) as *const u8 as usize;
                self.shared(id, |f| Ok(Value::Tuple(f.seq(rc)?.into())))?
            }
            Obj::List(rc) => {
                let id = Rc::as_ptr(rc) as *const u8 as usize;
                self.shared(id, |f| Ok(Value::List(f.seq(&rc.borrow())?.into())))?
            }
            Obj::Set(rc) => {
                let id = Rc::as_ptr(rc) as *const u8 as usize;
                self.shared(id, |f| Ok(Value::Set(f.seq(&rc.borrow())?.into())))?
            }
            Obj::Object(rc) => {
                let id = Rc::as_ptr(rc) as *const u8 as usize;
                self.shared(id, |f| {
                    let object = rc.borrow();
                    let mut dict_items = Vec::with_capacity(object.dict_items.len());
                    for (k, v) in &object.dict_items {
                        dict_items.push((f.freeze(k)?, f.freeze(v)?));
                    }
                    Ok(Value::Object(Arc::new(ObjectValue {
                        global: Arc::from(object.global.as_str()),
                        new: object.new,
                        args: f.seq(&object.args)?.into(),
                        state: object.state.as_ref().map(|s| f.freeze(s)).transpose()?,
                        items: f.seq(&object.items)?.into(),
                        dict_items: dict_items.into(),
                    })))
                })?
            }
            Obj::Dict(rc) => {
                let id = Rc::as_ptr(rc) as *const u8 as usize;
                self.shared(id, |f| {
                    let dict = rc.borrow();
                    let mut out = Vec::with_capacity(dict.items.len());
                    for (k, v) in &dict.items {
                        out.push((f.freeze(k)?, f.freeze(v)?));
                    }
                    let plain = Value::Dict(out.into());
                    if !dict.ordered {
                        return Ok(plain);
                    }
                    // Its type and `_metadata` kept: see `Value::as_dict`.
                    Ok(Value::Object(Arc::new(ObjectValue {
                        global: Arc::from("collections.OrderedDict"),
                        new: false,
                        args: vec![plain].into(),
                        state: dict.state.as_ref().map(|s| f.freeze(s)).transpose()?,
                        items: Vec::new().into(),
                        dict_items: Vec::new().into(),
                    })))
                })?
            }
        })
    }

    fn seq(&mut self, items: &[Obj]) -> Result<Vec<Value>> {
        items.iter().map(|o| self.freeze(o)).collect()
    }

    fn shared(
        &mut self,
        id: usize,
        build: impl FnOnce(&mut Self) -> Result<Value>,
    ) -> Result<Value> {
        if let Some(v) = self.done.get(&id) {
            return Ok(v.clone());
        }
        if self.in_progress.contains(&id) {
            return Err(Error::checkpoint(
                "the pickle builds a container that contains itself; plain checkpoints never do",
            ));
        }
        if self.in_progress.len() >= self.limits.max_depth {
            return Err(Error::limit("max_depth", self.limits.max_depth as u64, 0));
        }
        self.in_progress.push(id);
        let value = build(self);
        self.in_progress.pop();
        let value = value?;
        self.done.insert(id, value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_overwrites_in_place() {
        let mut d = DictObj::default();
        d.set(Obj::Str("a".into()), Obj::Int(1));
        d.set(Obj::Str("b".into()), Obj::Int(2));
        d.set(Obj::Str("a".into()), Obj::Int(3));
        assert_eq!(d.items.len(), 2);
        assert!(matches!(d.items[0], (Obj::Str(_), Obj::Int(3))));
    }

    #[test]
    fn freezing_keeps_sharing_and_refuses_cycles() {
        let limits = Limits::default();
        let inner = Obj::new_list(vec![Obj::Int(1)]);
        let outer = Obj::Tuple(Rc::new(vec![inner.clone(), inner.clone()]));
        let v = Freezer::new(&limits).freeze(&outer).unwrap();
        let Value::Tuple(items) = v else { panic!() };
        let (Value::List(a), Value::List(b)) = (&items[0], &items[1]) else {
            panic!()
        };
        assert!(Arc::ptr_eq(a, b));

        let cyclic = Obj::new_list(vec![]);
        if let Obj::List(cell) = &cyclic {
            cell.borrow_mut().push(cyclic.clone());
        }
        assert!(Freezer::new(&limits).freeze(&cyclic).is_err());
        teardown(vec![cyclic]);
    }

    #[test]
    fn deep_nesting_is_refused_and_dropped_without_recursion() {
        let mut obj = Obj::None;
        for _ in 0..1_000_000 {
            obj = Obj::Tuple(Rc::new(vec![obj]));
        }
        let err = Freezer::new(&Limits::default()).freeze(&obj).unwrap_err();
        assert!(matches!(
            err,
            Error::LimitExceeded {
                limit: "max_depth",
                ..
            }
        ));
        teardown(vec![obj]);
    }
}
