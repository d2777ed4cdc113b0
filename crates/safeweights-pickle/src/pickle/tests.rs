//! VM unit tests on hand-written pickles.

use super::*;
use crate::error::Error;
use crate::limits::Limits;

fn load(data: &[u8]) -> crate::Result<Value> {
    load_pickle(data, 0, &Limits::default(), Policy::Torch).map(|l| l.value)
}

#[test]
fn literals_and_memo_sharing() {
    // {'a': [1, 2], 'b': <memo 1>}, protocol 2
    let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01K\x02eX\x01\x00\x00\x00bh\x01u.";
    let v = load(p).unwrap();
    let (Some(Value::List(a)), Some(Value::List(b))) = (v.get("a"), v.get("b")) else {
        panic!("{v:?}")
    };
    assert_eq!(&**a, &[Value::Int(1), Value::Int(2)]);
    assert!(std::sync::Arc::ptr_eq(a, b));
}

#[test]
fn numbers_strings_and_bytes() {
    // (-1, 300, 2**70, 1.5, 'hé', b'x', True, None)
    let p = b"\x80\x04(J\xff\xff\xff\xffM,\x01\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\
G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x03h\xc3\xa9C\x01x\x88Nt.";
    let Value::Tuple(t) = load(p).unwrap() else {
        panic!()
    };
    assert_eq!(t[0], Value::Int(-1));
    assert_eq!(t[1], Value::Int(300));
    assert!(matches!(&t[2], Value::BigInt(b) if b.len() == 9));
    assert_eq!(t[3], Value::Float(1.5));
    assert_eq!(t[4].as_str(), Some("hé"));
    assert_eq!(t[5], Value::Bytes(b"x"[..].into()));
    assert_eq!((&t[6], &t[7]), (&Value::Bool(true), &Value::None));
}

#[test]
fn protocol2_bytes_set_and_complex() {
    let p = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xbfaX\x06\x00\x00\x00latin1\x86R\
c__builtin__\nset\n]K\x07a\x85R\
c__builtin__\ncomplex\nG?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86R\x87.";
    let Value::Tuple(t) = load(p).unwrap() else {
        panic!()
    };
    assert_eq!(t[0], Value::Bytes(b"\xffa"[..].into()));
    assert_eq!(t[1], Value::Set(vec![Value::Int(7)].into()));
    assert_eq!(t[2], Value::Complex(1.0, 2.0));
}

#[test]
fn refused_opcodes_name_opcode_and_offset() {
    for (p, name, offset) in [
        (&b"\x80\x02ios\nsystem\n."[..], "INST", 2),
        (b"\x80\x02(o.", "OBJ", 3),
        (b"\x80\x02N0N.", "POP", 3),
        (b"\x80\x02N2.", "DUP", 3),
        (b"\x80\x02\x82\x01.", "EXT1", 2),
        (b"\x80\x02P1\n.", "PERSID", 2),
        (b"\x80\x05\x97.", "NEXT_BUFFER", 2),
        (b"\x80\x02(N1.", "POP_MARK", 4),
        (b"\x80\x02\xfe.", "UNKNOWN", 2),
    ] {
        match load(p) {
            Err(Error::RefusedOpcode {
                name: n, offset: o, ..
            }) => {
                assert_eq!((n, o), (name, offset))
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn refused_globals_name_global_and_offset() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.",
            "os.system",
        ),
        (b"\x80\x02cbuiltins\neval\n.", "builtins.eval"),
        (
            b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93.",
            "os.system",
        ),
        // Operands swapped through the memo: module and name come from BINGET.
        (
            b"\x80\x04\x8c\x06system\x94\x8c\x02os\x94h\x01h\x00\x93.",
            "os.system",
        ),
    ];
    for (p, name) in cases {
        match load(p) {
            Err(Error::RefusedGlobal {
                module, name: n, ..
            }) => {
                assert_eq!(format!("{module}.{n}"), name)
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let literal = load_pickle(
        b"\x80\x02ccollections\nOrderedDict\n.",
        0,
        &Limits::default(),
        Policy::Literals,
    );
    assert!(matches!(literal, Err(Error::RefusedGlobal { .. })));
}

#[test]
fn stack_global_needs_string_operands() {
    assert!(matches!(
        load(b"\x80\x04K\x01K\x02\x93."),
        Err(Error::Pickle { .. })
    ));
}

#[test]
fn frames_are_validated() {
    assert!(load(b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N.").is_ok());
    let long = b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.";
    assert!(matches!(load(long), Err(Error::Pickle { .. })));
    let straddle = b"\x80\x04\x95\x01\x00\x00\x00\x00\x00\x00\x00K\x01.";
    assert!(matches!(load(straddle), Err(Error::Pickle { .. })));
}

#[test]
fn malformed_streams_are_errors_not_panics() {
    for p in [
        &b""[..],
        b"\x80",
        b"\x80\x02",
        b"\x80\x02.",
        b"\x80\x02a.",
        b"\x80\x02(t(.",
        b"\x80\x02u.",
        b"\x80\x02h\x05.",
        b"\x80\x02K\x01\x87.",
        b"\x80\x02}K\x01s.",
        b"\x80\x02)R.",
        b"\x80\x06N.",
    ] {
        assert!(load(p).is_err(), "{p:?}");
    }
}

#[test]
fn persistent_ids_only_describe_storages() {
    let module = b"\x80\x02X\x06\x00\x00\x00module\x85Q.";
    assert!(matches!(load(module), Err(Error::Checkpoint { .. })));
    let short = b"\x80\x02X\x07\x00\x00\x00storage\x85Q.";
    assert!(matches!(load(short), Err(Error::Pickle { .. })));
}

#[test]
fn limits_stop_bombs_early() {
    let limits = Limits {
        max_ops: 10,
        ..Limits::default()
    };
    let p: Vec<u8> = [&b"\x80\x02]"[..], &b"N"[..].repeat(100), b"."].concat();
    let err = load_pickle(&p, 0, &limits, Policy::Torch).unwrap_err();
    assert!(matches!(
        err,
        Error::LimitExceeded {
            limit: "max_ops",
            ..
        }
    ));

    let limits = Limits {
        max_stack: 50,
        ..Limits::default()
    };
    let err = load_pickle(&p, 0, &limits, Policy::Torch).unwrap_err();
    assert!(matches!(
        err,
        Error::LimitExceeded {
            limit: "max_stack",
            ..
        }
    ));
}

#[test]
fn billion_laughs_is_cheap_and_bounded() {
    // l0 = [0]*10 ; l(n+1) = [ln]*10 nine times: 10**10 leaves as a tree.
    let mut p = b"\x80\x02](".to_vec();
    p.extend(b"K\x00".repeat(10));
    p.extend(b"eq\x00");
    for i in 0..9u8 {
        p.extend(b"](");
        p.extend([b'h', i].repeat(10));
        p.extend([b'e', b'q', i + 1]);
    }
    p.push(b'.');
    let v = load(&p).unwrap();
    let Value::List(top) = v else { panic!() };
    assert_eq!(top.len(), 10);
}

#[test]
fn deep_nesting_is_refused() {
    let mut p = b"\x80\x02N".to_vec();
    p.extend(std::iter::repeat_n(0x85u8, 100_000));
    p.push(b'.');
    let err = load(&p).unwrap_err();
    assert!(matches!(
        err,
        Error::LimitExceeded {
            limit: "max_depth",
            ..
        }
    ));
}

#[test]
fn recorded_globals_become_objects_with_their_args_and_state() {
    // collections.Counter({'a': 2}); numpy.dtype('f4', False, True) + BUILD (3, '>')
    let p = b"\x80\x02ccollections\nCounter\n}X\x01\x00\x00\x00aK\x02s\x85R\
cnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87RK\x03X\x01\x00\x00\x00>\x86b\x86.";
    let Value::Tuple(t) = load(p).unwrap() else {
        panic!()
    };
    let (Value::Object(counter), Value::Object(dtype)) = (&t[0], &t[1]) else {
        panic!("{t:?}")
    };
    assert_eq!(&*counter.global, "collections.Counter");
    assert!(!counter.new && counter.state.is_none());
    assert!(matches!(&counter.args[0], Value::Dict(items) if items.len() == 1));
    assert_eq!(&*dtype.global, "numpy.dtype");
    assert_eq!(dtype.args[0].as_str(), Some("f4"));
    assert!(matches!(&dtype.state, Some(Value::Tuple(s)) if s[1].as_str() == Some(">")));
}

#[test]
fn caller_allowed_classes_are_recorded_and_others_refused() {
    // copyreg NEWOBJ of cfg.Config with BUILD {'lr': 1}
    let p = b"\x80\x02ccfg\nConfig\n)\x81}X\x02\x00\x00\x00lrK\x01sb.";
    assert!(matches!(
        load(p),
        Err(Error::RefusedGlobal { ref module, ref name, .. }) if module == "cfg" && name == "Config"
    ));
    let limits = Limits {
        allowed_classes: vec!["cfg.Config".into()],
        ..Limits::default()
    };
    let Value::Object(object) = load_pickle(p, 0, &limits, Policy::Torch).unwrap().value else {
        panic!()
    };
    assert_eq!(&*object.global, "cfg.Config");
    assert!(object.new && object.args.is_empty());
    assert!(matches!(&object.state, Some(Value::Dict(d)) if d.len() == 1));
    // Allowing a class never lets the literals-only header pickles use it.
    assert!(load_pickle(p, 0, &limits, Policy::Literals).is_err());
}

#[test]
fn rebuild_from_type_v2_of_a_plain_tensor_is_the_tensor_and_subclasses_are_refused() {
    // _rebuild_from_type_v2(_rebuild_tensor_v2, <type>,
    //     (storage, 0, (1,), (1,), False, {}), {})
    let pickle = |class: &[u8]| {
        let mut p =
            b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor_v2\n"
                .to_vec();
        p.extend_from_slice(class);
        p.extend_from_slice(
            b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000\
X\x03\x00\x00\x00cpuK\x01tQK\x00K\x01\x85K\x01\x85\x89}t}tR.",
        );
        p
    };
    let plain = load(&pickle(b"ctorch\nTensor\n")).unwrap();
    assert!(
        matches!(&plain, Value::Tensor(t) if t.shape == vec![1]),
        "{plain:?}"
    );
    let err = load(&pickle(b"ctorch\nFloatTensor\n")).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor subclass torch.FloatTensor"),
        "{err}"
    );
}

#[test]
fn ordered_dicts_keep_their_type_and_metadata_and_still_read_as_dicts() {
    // OrderedDict() ; SETITEMS {'w': 1} ; BUILD {'_metadata': {'': 2}}
    let p = b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00wK\x01u\
}X\t\x00\x00\x00_metadata}X\x00\x00\x00\x00K\x02ssb.";
    let v = load(p).unwrap();
    let Value::Object(object) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(&*object.global, "collections.OrderedDict");
    assert!(matches!(&object.state, Some(state) if state.get("_metadata").is_some()));
    assert_eq!(v.get("w"), Some(&Value::Int(1)));
    assert_eq!(v.as_dict().map(|items| items.len()), Some(1));
}
