//! Turns header JSON text into tensor entries, enforcing the JSON-level rules:
//! an object at the top, known fields only, no duplicate keys, integer dims,
//! a string-to-string `__metadata__`.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::format::dtype::Dtype;
use crate::format::header::Metadata;
use crate::format::json::{Cursor, Number};
use crate::format::table::Table;

/// Key under which the header stores free-form string metadata.
pub const METADATA_KEY: &str = "__metadata__";

/// What the JSON walk produces, before offsets are checked.
pub(crate) struct ParsedHeader {
    pub(crate) metadata: Option<Metadata>,
    /// Entries in the order they appear in the JSON.
    pub(crate) tensors: Table,
}

/// Bytes of JSON walked between two calls of the `done` hook.
const DONE_STEP: usize = 4 << 20;

/// Walks the header JSON. `done(n)` is called every few MiB with the number
/// of leading bytes that the walk has finished with, so that a caller
/// parsing from a file map can give those pages back while the table grows
/// (see [`Header::parse_file_releasing`](crate::Header::parse_file_releasing)).
pub(crate) fn parse_header_json(text: &str, done: &mut dyn FnMut(usize)) -> Result<ParsedHeader> {
    let mut cursor = Cursor::new(text);
    let mut next_done = DONE_STEP;
    match cursor.peek() {
        Some(b'{') => {}
        Some(_) => return Err(Error::HeaderNotObject),
        None => return Err(cursor.error("empty header")),
    }
    cursor.expect(b'{')?;
    let mut metadata = None;
    let mut seen_metadata = false;
    let mut tensors = Table::default();
    if !cursor.eat(b'}') {
        loop {
            let key = cursor.string()?;
            cursor.expect(b':')?;
            if key == METADATA_KEY {
                if seen_metadata {
                    return Err(duplicate("the header", METADATA_KEY));
                }
                seen_metadata = true;
                metadata = parse_metadata(&mut cursor)?;
            } else {
                parse_tensor(&mut cursor, key, &mut tensors)?;
            }
            if cursor.offset() >= next_done {
                done(cursor.offset());
                next_done = cursor.offset() + DONE_STEP;
            }
            if !cursor.next_element(b'}')? {
                break;
            }
        }
    }
    if !cursor.at_end() {
        return Err(Error::TrailingCharacters {
            offset: cursor.offset(),
        });
    }
    Ok(ParsedHeader { metadata, tensors })
}

fn duplicate(within: &str, key: &str) -> Error {
    Error::DuplicateKey {
        within: within.to_owned(),
        key: key.to_owned(),
    }
}

/// `__metadata__` is an object of strings; `null` is accepted as "none"
/// because the reference accepts it.
fn parse_metadata(cursor: &mut Cursor<'_>) -> Result<Option<Metadata>> {
    if cursor.eat_null() {
        return Ok(None);
    }
    if cursor.peek() != Some(b'{') {
        return Err(Error::InvalidMetadata {
            reason: format!("expected an object, found {}", cursor.describe_value()),
        });
    }
    cursor.expect(b'{')?;
    let mut metadata = Metadata::new();
    if cursor.eat(b'}') {
        return Ok(Some(metadata));
    }
    loop {
        let key = cursor.string()?.into_owned();
        cursor.expect(b':')?;
        if cursor.peek() != Some(b'"') {
            return Err(Error::InvalidMetadata {
                reason: format!(
                    "value of {key:?} is {}, but metadata values must be strings",
                    cursor.describe_value()
                ),
            });
        }
        let value = cursor.string()?.into_owned();
        if metadata.contains_key(&key) {
            return Err(duplicate(METADATA_KEY, &key));
        }
        metadata.insert(key, value);
        if !cursor.next_element(b'}')? {
            return Ok(Some(metadata));
        }
    }
}

#[derive(Default)]
struct Fields {
    dtype: Option<Dtype>,
    shape: Option<()>,
    offsets: Option<(u64, u64)>,
}

/// Parses one tensor's entry into `table`: its dims straight into the
/// table's array, its name copied into the table's string once complete.
fn parse_tensor(cursor: &mut Cursor<'_>, name: Cow<'_, str>, table: &mut Table) -> Result<()> {
    if cursor.peek() != Some(b'{') {
        return Err(Error::InvalidField {
            tensor: name.into_owned(),
            field: "entry",
            reason: format!("must be an object, found {}", cursor.describe_value()),
        });
    }
    cursor.expect(b'{')?;
    let mut fields = Fields::default();
    if !cursor.eat(b'}') {
        loop {
            let field = cursor.string()?;
            cursor.expect(b':')?;
            match field.as_ref() {
                "dtype" => {
                    check_unset(&fields.dtype, &name, "dtype")?;
                    fields.dtype = Some(parse_dtype(cursor, &name)?);
                }
                "shape" => {
                    check_unset(&fields.shape, &name, "shape")?;
                    parse_shape(cursor, &name, table)?;
                    fields.shape = Some(());
                }
                "data_offsets" => {
                    check_unset(&fields.offsets, &name, "data_offsets")?;
                    fields.offsets = Some(parse_offsets(cursor, &name)?);
                }
                // Strict on purpose: the published JSON schema forbids extra
                // fields, and accepting them would let two readers disagree
                // about what a file means. The reference ignores them.
                _ => {
                    return Err(Error::UnknownField {
                        tensor: name.into_owned(),
                        field: field.into_owned(),
                    })
                }
            }
            if !cursor.next_element(b'}')? {
                break;
            }
        }
    }
    let missing = |field| Error::MissingField {
        tensor: name.clone().into_owned(),
        field,
    };
    let dtype = fields.dtype.ok_or_else(|| missing("dtype"))?;
    fields.shape.ok_or_else(|| missing("shape"))?;
    let (begin, end) = fields.offsets.ok_or_else(|| missing("data_offsets"))?;
    table.push(&name, dtype, begin, end)
}

fn check_unset<T>(slot: &Option<T>, tensor: &str, field: &str) -> Result<()> {
    match slot {
        Some(_) => Err(duplicate(&format!("tensor {tensor:?}"), field)),
        None => Ok(()),
    }
}

fn parse_dtype(cursor: &mut Cursor<'_>, tensor: &str) -> Result<Dtype> {
    if cursor.peek() != Some(b'"') {
        return Err(Error::InvalidField {
            tensor: tensor.to_owned(),
            field: "dtype",
            reason: format!("must be a string, found {}", cursor.describe_value()),
        });
    }
    let text = cursor.string()?;
    Dtype::from_name(&text).ok_or_else(|| Error::UnknownDtype {
        tensor: tensor.to_owned(),
        dtype: text.into_owned(),
    })
}

fn parse_shape(cursor: &mut Cursor<'_>, tensor: &str, table: &mut Table) -> Result<()> {
    let invalid = |reason: String| Error::InvalidShape {
        tensor: tensor.to_owned(),
        reason,
    };
    let mut axis = 0;
    parse_integer_array(cursor, tensor, "shape", |dim| {
        let value = match dim {
            Number::Unsigned(value) => usize::try_from(value)
                .map_err(|_| invalid(format!("dimension {axis} is too large")))?,
            Number::Negative => return Err(invalid(format!("dimension {axis} is negative"))),
            Number::Fractional => {
                return Err(invalid(format!("dimension {axis} is not an integer")))
            }
            Number::TooLarge => return Err(invalid(format!("dimension {axis} is too large"))),
        };
        table.push_dim(value);
        axis += 1;
        Ok(())
    })
}

fn parse_offsets(cursor: &mut Cursor<'_>, tensor: &str) -> Result<(u64, u64)> {
    let invalid = |reason: &str| Error::InvalidField {
        tensor: tensor.to_owned(),
        field: "data_offsets",
        reason: reason.to_owned(),
    };
    let mut values = [0u64; 2];
    let mut count = 0;
    parse_integer_array(cursor, tensor, "data_offsets", |number| {
        let Number::Unsigned(value) = number else {
            return Err(invalid("must hold non-negative integers"));
        };
        if let Some(slot) = values.get_mut(count) {
            *slot = value;
        }
        count += 1;
        Ok(())
    })?;
    if count != 2 {
        return Err(invalid("must have exactly two elements, [begin, end]"));
    }
    Ok((values[0], values[1]))
}

/// Walks an array of integers, handing each to `element` without
/// collecting them first.
fn parse_integer_array(
    cursor: &mut Cursor<'_>,
    tensor: &str,
    field: &'static str,
    mut element: impl FnMut(Number) -> Result<()>,
) -> Result<()> {
    if cursor.peek() != Some(b'[') {
        return Err(Error::InvalidField {
            tensor: tensor.to_owned(),
            field,
            reason: format!("must be an array, found {}", cursor.describe_value()),
        });
    }
    cursor.expect(b'[')?;
    if cursor.eat(b']') {
        return Ok(());
    }
    loop {
        if !matches!(cursor.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(Error::InvalidField {
                tensor: tensor.to_owned(),
                field,
                reason: format!("must hold integers, found {}", cursor.describe_value()),
            });
        }
        element(cursor.number()?)?;
        if !cursor.next_element(b']')? {
            return Ok(());
        }
    }
}
