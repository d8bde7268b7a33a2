//! A pickle virtual machine for PyTorch checkpoints: it builds a tree of
//! [`Value`]s and never runs code (globals stay names, reductions stay data).
//!
//! Why not candle's `pickle::Stack`: it knows no Python-2 string opcodes
//! (`U` SHORT_BINSTRING, `T` BINSTRING, as in pretrainedmodels' BN-Inception
//! file), nor protocol 4/5 (`FRAME`, `MEMOIZE`, `SHORT_BINUNICODE`,
//! `STACK_GLOBAL`); it reads `DICT` as `EMPTY_DICT`; and it turns every
//! `collections.OrderedDict` reduction into an empty dict, dropping its
//! arguments. Python 2 pickles an `OrderedDict` as `OrderedDict([[k, v], ...])`
//! (a reduction whose argument holds the items), so a Python-2 state dict would
//! read as empty. Rewriting the opcode stream cannot fix the last point, so this
//! reader implements the opcodes itself (those of protocols 0-5 that carry data;
//! `pickletools` is the reference for their layouts).

use std::collections::HashMap;

/// A decoded pickle object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer: its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string (Python 2 byte strings that are valid UTF-8 become text, as
    /// `torch.load`'s default `encoding="utf-8"` does).
    Str(String),
    /// Bytes (and Python 2 byte strings that are not UTF-8).
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list (sets and frozensets are read as lists too).
    List(Vec<Value>),
    /// A dict, in insertion order (`OrderedDict` and `dict(...)` reductions included).
    Dict(Vec<(Value, Value)>),
    /// A global name: module and qualified name (a class or function, not resolved).
    Global(String, String),
    /// `callable(*args)` of REDUCE / NEWOBJ / INST / OBJ, with what BUILD,
    /// SETITEMS and APPENDS later added to it.
    Object(Box<Object>),
    /// A persistent id (torch: a storage reference).
    PersistentId(Box<Value>),
}

/// An instance built by a reduction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    /// What was called.
    pub callable: Value,
    /// The arguments (usually a tuple).
    pub args: Value,
    /// The state given by BUILD, if any.
    pub state: Option<Value>,
    /// Items added by SETITEM(S) (dict subclasses).
    pub items: Vec<(Value, Value)>,
    /// Elements added by APPEND(S) (list subclasses).
    pub elements: Vec<Value>,
}

impl Value {
    /// The string, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The items of a dict, or of an instance of a dict subclass.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            Value::Object(o) if !o.items.is_empty() => Some(&o.items),
            _ => None,
        }
    }

    /// The children of this node (for walking the tree).
    pub fn children(&self) -> Vec<&Value> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().collect(),
            Value::Dict(d) => d.iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Object(o) => {
                let mut c = vec![&o.callable, &o.args];
                c.extend(o.state.as_ref());
                c.extend(o.items.iter().flat_map(|(k, v)| [k, v]));
                c.extend(o.elements.iter());
                c
            }
            Value::PersistentId(v) => vec![v],
            _ => Vec::new(),
        }
    }
}

/// Why a pickle could not be read, with the byte position of the opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError {
    /// Offset of the failing opcode in the pickle.
    pub pos: usize,
    /// What went wrong.
    pub what: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {} of the pickle)", self.what, self.pos)
    }
}

/// Nesting deeper than this is refused: real checkpoints nest a few levels, and
/// dropping a tree recurses once per level.
const MAX_DEPTH: u32 = 1000;
/// Total nodes copied out of the memo: bounds the work of a pickle that
/// references big memoised objects over and over.
const MAX_MEMO_COPIES: u64 = 5_000_000;

/// A stack entry: the value, its nesting depth and node count.
#[derive(Debug, Clone)]
struct Entry {
    v: Value,
    depth: u32,
    nodes: u64,
}

impl Entry {
    fn leaf(v: Value) -> Entry {
        Entry {
            v,
            depth: 1,
            nodes: 1,
        }
    }
}

enum Slot {
    Mark,
    Val(Entry),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, Entry>,
    copied: u64,
}

/// Reads one pickle from the start of `data`; returns the object and the
/// number of bytes it took (legacy torch files hold several pickles in a row).
pub(crate) fn load(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        copied: 0,
    };
    let v = vm.run()?;
    Ok((v, vm.pos))
}

fn combine<'e>(parts: impl IntoIterator<Item = &'e Entry>) -> (u32, u64) {
    parts.into_iter().fold((1, 1), |(d, n), e| {
        (d.max(e.depth + 1), n.saturating_add(e.nodes))
    })
}

/// Text of a Python-2 byte string: UTF-8 if valid, else kept as bytes.
fn py2_string(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::Str(s.to_string()),
        Err(_) => Value::Bytes(b.to_vec()),
    }
}

/// Little-endian two's complement of up to 8 bytes as an i64.
fn le_int(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 8 {
        return Value::BigInt(b.to_vec());
    }
    let mut buf = if b[b.len() - 1] & 0x80 != 0 {
        [0xffu8; 8]
    } else {
        [0u8; 8]
    };
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(buf))
}

impl<'a> Vm<'a> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            pos: self.op_pos,
            what: what.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.err(format!(
                "truncated: opcode needs {n} more bytes, {} left",
                self.data.len() - self.pos
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        let b = self.take(n)?;
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(buf))
    }

    /// A length prefix of `n` bytes, then that many bytes.
    fn counted(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let len = self.le(n)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.take(len)
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("truncated: no end of line");
        };
        self.pos += n + 1;
        let l = &rest[..n];
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        match std::str::from_utf8(l) {
            Ok(s) => Ok(s),
            Err(_) => self.err("text argument is not UTF-8"),
        }
    }

    fn push(&mut self, e: Entry) -> Result<(), PickleError> {
        if e.depth > MAX_DEPTH {
            return self.err(format!("objects nested deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(Slot::Val(e));
        Ok(())
    }

    fn push_leaf(&mut self, v: Value) -> Result<(), PickleError> {
        self.push(Entry::leaf(v))
    }

    fn pop(&mut self) -> Result<Entry, PickleError> {
        match self.stack.pop() {
            Some(Slot::Val(e)) => Ok(e),
            Some(Slot::Mark) => self.err("expected an object on the stack, found a mark"),
            None => self.err("stack underflow"),
        }
    }

    fn top(&mut self) -> Result<&mut Entry, PickleError> {
        match self.stack.last_mut() {
            Some(Slot::Val(e)) => Ok(e),
            _ => Err(PickleError {
                pos: self.op_pos,
                what: "expected an object on top of the stack".into(),
            }),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Entry>, PickleError> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.err("no mark on the stack");
        };
        let items = self
            .stack
            .split_off(m + 1)
            .into_iter()
            .filter_map(|s| match s {
                Slot::Val(e) => Some(e),
                Slot::Mark => None,
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn seq(&mut self, items: Vec<Entry>, tuple: bool) -> Result<(), PickleError> {
        let (depth, nodes) = combine(&items);
        let v: Vec<Value> = items.into_iter().map(|e| e.v).collect();
        self.push(Entry {
            v: if tuple {
                Value::Tuple(v)
            } else {
                Value::List(v)
            },
            depth,
            nodes,
        })
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        let e = self.top()?.clone();
        self.copied = self.copied.saturating_add(e.nodes);
        self.memo.insert(idx, e);
        self.check_copies()
    }

    fn memo_get(&mut self, idx: u64) -> Result<(), PickleError> {
        let Some(e) = self.memo.get(&idx).cloned() else {
            return self.err(format!("memo entry {idx} was never stored"));
        };
        self.copied = self.copied.saturating_add(e.nodes);
        self.check_copies()?;
        self.push(e)
    }

    fn check_copies(&self) -> Result<(), PickleError> {
        if self.copied > MAX_MEMO_COPIES {
            return self.err("memo references copy more than 5 million objects");
        }
        Ok(())
    }

    /// Adds items to the dict (or dict-like instance) on top of the stack.
    fn set_items(&mut self, items: Vec<Entry>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of objects");
        }
        let (depth, nodes) = combine(&items);
        let pos = self.op_pos;
        let top = self.top()?;
        let mut it = items.into_iter().map(|e| e.v);
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match &mut top.v {
            Value::Dict(d) => d.extend(pairs),
            Value::Object(o) => o.items.extend(pairs),
            other => {
                return Err(PickleError {
                    pos,
                    what: format!("SETITEM(S) on a {}", kind(other)),
                })
            }
        }
        top.depth = top.depth.max(depth);
        top.nodes = top.nodes.saturating_add(nodes);
        if top.depth > MAX_DEPTH {
            return self.err(format!("objects nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// Appends to the list (or list-like instance) on top of the stack.
    fn append(&mut self, items: Vec<Entry>) -> Result<(), PickleError> {
        let (depth, nodes) = combine(&items);
        let pos = self.op_pos;
        let top = self.top()?;
        let vals = items.into_iter().map(|e| e.v);
        match &mut top.v {
            Value::List(l) => l.extend(vals),
            Value::Object(o) => o.elements.extend(vals),
            other => {
                return Err(PickleError {
                    pos,
                    what: format!("APPEND(S) on a {}", kind(other)),
                })
            }
        }
        top.depth = top.depth.max(depth);
        top.nodes = top.nodes.saturating_add(nodes);
        if top.depth > MAX_DEPTH {
            return self.err(format!("objects nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// `callable(*args)`: dict constructors become dicts (Python 2 pickles an
    /// `OrderedDict` as `OrderedDict([[k, v], ...])`); anything else stays data.
    fn call(&mut self, callable: Entry, args: Entry) -> Result<(), PickleError> {
        let (depth, nodes) = combine([&callable, &args]);
        let dict_ctor = matches!(
            &callable.v,
            Value::Global(m, n) if matches!(
                (m.as_str(), n.as_str()),
                ("collections", "OrderedDict")
                    | ("builtins" | "__builtin__", "dict")
            )
        );
        let default_dict = matches!(
            &callable.v,
            Value::Global(m, n) if m == "collections" && n == "defaultdict"
        );
        let v = if default_dict {
            // defaultdict(factory): its items follow as SETITEMS.
            Some(Value::Dict(Vec::new()))
        } else if dict_ctor {
            match args.v.as_seq() {
                Some([]) => Some(Value::Dict(Vec::new())),
                Some([Value::Dict(d)]) => Some(Value::Dict(d.clone())),
                Some([items]) => items
                    .as_seq()
                    .map(|items| {
                        items
                            .iter()
                            .map(|kv| match kv.as_seq() {
                                Some([k, v]) => Some((k.clone(), v.clone())),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()
                    })
                    .and_then(|d| d.map(Value::Dict)),
                _ => None,
            }
        } else {
            None
        };
        let v = v.unwrap_or_else(|| {
            Value::Object(Box::new(Object {
                callable: callable.v,
                args: args.v,
                state: None,
                items: Vec::new(),
                elements: Vec::new(),
            }))
        });
        self.push(Entry { v, depth, nodes })
    }

    fn build(&mut self) -> Result<(), PickleError> {
        let state = self.pop()?;
        let pos = self.op_pos;
        let top = self.top()?;
        let (depth, nodes) = combine([&*top, &state]);
        match &mut top.v {
            // A dict's BUILD state sets attributes (an OrderedDict's `_metadata`),
            // not items.
            Value::Dict(_) => {}
            Value::Object(o) => o.state = Some(state.v),
            other => {
                return Err(PickleError {
                    pos,
                    what: format!("BUILD on a {}", kind(other)),
                })
            }
        }
        top.depth = top.depth.max(depth);
        top.nodes = nodes;
        if top.depth > MAX_DEPTH {
            return self.err(format!("objects nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO, FRAME: framing only.
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v.v);
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let e = self.top()?.clone();
                    self.push(e)?;
                }
                b'N' => self.push_leaf(Value::None)?,
                0x88 => self.push_leaf(Value::Bool(true))?,
                0x89 => self.push_leaf(Value::Bool(false))?,
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.push_leaf(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push_leaf(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.push_leaf(Value::Int(v as i64))?
                }
                // LONG1, LONG4
                0x8a => {
                    let b = self.counted(1)?;
                    self.push_leaf(le_int(b))?
                }
                0x8b => {
                    let b = self.counted(4)?;
                    self.push_leaf(le_int(b))?
                }
                // INT, LONG (text; protocol 0): "01"/"00" are Python 2's True/False.
                b'I' | b'L' => {
                    let l = self.line()?.trim_end_matches('L');
                    let v = match l {
                        "01" if op == b'I' => Value::Bool(true),
                        "00" if op == b'I' => Value::Bool(false),
                        _ => match l.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.err(format!("bad integer literal {l:?}")),
                        },
                    };
                    self.push_leaf(v)?
                }
                b'F' => {
                    let l = self.line()?;
                    match l.parse::<f64>() {
                        Ok(f) => self.push_leaf(Value::Float(f))?,
                        Err(_) => return self.err(format!("bad float literal {l:?}")),
                    }
                }
                // BINFLOAT is big-endian.
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push_leaf(Value::Float(f64::from_be_bytes(a)))?
                }
                // Python 2 byte strings: SHORT_BINSTRING, BINSTRING.
                b'U' => {
                    let b = self.counted(1)?;
                    self.push_leaf(py2_string(b))?
                }
                b'T' => {
                    let b = self.counted(4)?;
                    self.push_leaf(py2_string(b))?
                }
                // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8.
                0x8c | b'X' | 0x8d => {
                    let n = match op {
                        0x8c => 1,
                        b'X' => 4,
                        _ => 8,
                    };
                    let b = self.counted(n)?;
                    match std::str::from_utf8(b) {
                        Ok(s) => self.push_leaf(Value::Str(s.to_string()))?,
                        Err(_) => return self.err("unicode string is not UTF-8"),
                    }
                }
                // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8.
                b'C' | b'B' | 0x8e | 0x96 => {
                    let n = match op {
                        b'C' => 1,
                        b'B' => 4,
                        _ => 8,
                    };
                    let b = self.counted(n)?;
                    self.push_leaf(Value::Bytes(b.to_vec()))?
                }
                b')' => self.push_leaf(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.seq(items, true)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.seq(items, true)?
                }
                // EMPTY_LIST, EMPTY_SET
                b']' | 0x8f => self.push_leaf(Value::List(Vec::new()))?,
                // LIST, FROZENSET
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.seq(items, op == 0x91)?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                // APPENDS, ADDITEMS
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b'}' => self.push_leaf(Value::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push_leaf(Value::Dict(Vec::new()))?;
                    self.set_items(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                // GET, BINGET, LONG_BINGET
                b'g' => {
                    let l = self.line()?;
                    match l.parse::<u64>() {
                        Ok(i) => self.memo_get(i)?,
                        Err(_) => return self.err(format!("bad memo index {l:?}")),
                    }
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.le(4)?;
                    self.memo_get(i)?
                }
                // PUT, BINPUT, LONG_BINPUT, MEMOIZE
                b'p' => {
                    let l = self.line()?;
                    match l.parse::<u64>() {
                        Ok(i) => self.memo_put(i)?,
                        Err(_) => return self.err(format!("bad memo index {l:?}")),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.le(4)?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push_leaf(Value::Global(module, name))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.v, name.v) {
                        (Value::Str(m), Value::Str(n)) => self.push_leaf(Value::Global(m, n))?,
                        _ => return self.err("STACK_GLOBAL on non-string operands"),
                    }
                }
                // REDUCE, NEWOBJ: callable/class and an argument tuple.
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args)?
                }
                // NEWOBJ_EX: class, args, kwargs (kwargs kept in the state slot).
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.call(class, args)?;
                    if kwargs.v.as_dict().is_some_and(|d| !d.is_empty()) {
                        self.push(kwargs)?;
                        self.build()?;
                    }
                }
                // INST (module and name as text, args after the mark), OBJ (class first).
                b'i' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let items = self.pop_mark()?;
                    let (depth, nodes) = combine(&items);
                    let args = Entry {
                        v: Value::Tuple(items.into_iter().map(|e| e.v).collect()),
                        depth,
                        nodes,
                    };
                    self.call(Entry::leaf(Value::Global(module, name)), args)?
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.err("OBJ without a class");
                    }
                    let class = items.remove(0);
                    let (depth, nodes) = combine(&items);
                    let args = Entry {
                        v: Value::Tuple(items.into_iter().map(|e| e.v).collect()),
                        depth,
                        nodes,
                    };
                    self.call(class, args)?
                }
                b'b' => self.build()?,
                // PERSID (text id), BINPERSID
                b'P' => {
                    let id = self.line()?.to_string();
                    self.push_leaf(Value::PersistentId(Box::new(Value::Str(id))))?
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.push(Entry {
                        depth: id.depth + 1,
                        nodes: id.nodes + 1,
                        v: Value::PersistentId(Box::new(id.v)),
                    })?
                }
                b'S' | b'V' => {
                    return self.err(
                        "text-mode (protocol 0) string opcode: re-save the file with torch.save",
                    )
                }
                0x82..=0x84 => return self.err("extension-registry opcode (EXT1/2/4)"),
                0x97 | 0x98 => return self.err("out-of-band buffer opcode (protocol 5)"),
                other => return self.err(format!("unknown opcode 0x{other:02x}")),
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global name",
        Value::Object(_) => "object",
        Value::PersistentId(_) => "persistent id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn python2_ordered_dict_with_byte_strings() {
        // What Python 2.7's pickle (protocol 2) writes for
        // OrderedDict([('a', 1), ('bb', 'x' * 300)]).
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(U\x01aq\x03K\x01e]q\x04(U\x02bbq\x05T\x2c\x01\x00\x00".to_vec();
        p.extend([b'x'; 300]);
        p.extend(b"q\x06ee\x85q\x07Rq\x08.");
        let (v, n) = load(&p).unwrap();
        assert_eq!(n, p.len());
        assert_eq!(
            v,
            Value::Dict(vec![
                (s("a"), Value::Int(1)),
                (s("bb"), s(&"x".repeat(300)))
            ])
        );
    }

    #[test]
    fn protocol4_frames_memoize_and_stack_global() {
        // Protocol 4 by hand (pickle.loads gives {"k": (1, -2, 3.5), "m": OrderedDict()}).
        let p = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00\x87\x94\x8c\x01m\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94u.";
        let (v, _) = load(p).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    s("k"),
                    Value::Tuple(vec![Value::Int(1), Value::Int(-2), Value::Float(3.5)])
                ),
                (s("m"), Value::Dict(vec![])),
            ])
        );
    }

    #[test]
    fn long_integers_and_dict_opcode() {
        // LONG1 with a negative value and 9 bytes; DICT from a mark.
        let p = b"(U\x01a\x8a\x02\x00\xffU\x01b\x8a\x09\x01\x00\x00\x00\x00\x00\x00\x00\x01d.";
        let (v, _) = load(p).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (s("a"), Value::Int(-256)),
                (s("b"), Value::BigInt(vec![1, 0, 0, 0, 0, 0, 0, 0, 1]))
            ])
        );
    }

    #[test]
    fn malformed_pickles_are_errors_not_panics() {
        for (bytes, want) in [
            (&b"\x80\x02X\xff\xff\xff\xffab"[..], "truncated"),
            (b"\x80\x02h\x05.", "memo entry 5"),
            (b"\x80\x02u.", "no mark"),
            (b"\x80\x02K\x00K\x01K\x02s.", "SETITEM(S) on a int"),
            (b"\x80\x02\xff", "unknown opcode 0xff"),
            (b"\x80\x02", "truncated"),
            (b".", "stack underflow"),
        ] {
            let e = load(bytes).unwrap_err();
            assert!(e.to_string().contains(want), "{e} / {want}");
        }
        // Deep nesting is refused before it can overflow the stack on drop.
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 5000));
        deep.extend(std::iter::repeat_n(b'a', 4999));
        deep.push(b'.');
        assert!(load(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
        // Doubling through the memo is bounded.
        let mut bomb = b"\x80\x02]q\x00".to_vec();
        for _ in 0..60 {
            bomb.extend(b"h\x00h\x00\x86q\x00");
        }
        bomb.push(b'.');
        let e = load(&bomb).unwrap_err().to_string();
        assert!(
            e.contains("nested deeper") || e.contains("copy more"),
            "{e}"
        );
    }
}
