//! Zero-copy views over a safetensors file held in memory.

use crate::error::Result;
use crate::format::{Dtype, Header, HeaderLimits, Metadata, TensorEntry};
use crate::slice::{self, SliceArg};

/// A parsed safetensors buffer; tensors borrow from the caller's bytes.
#[derive(Debug, Clone)]
pub struct SafeTensors<'a> {
    header: Header,
    data: &'a [u8],
}

impl<'a> SafeTensors<'a> {
    /// Parses and validates `bytes`, a whole file, with the default limits.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::parse_with_limits(bytes, &HeaderLimits::default())
    }

    /// Parses and validates `bytes` with the given header limits.
    pub fn parse_with_limits(bytes: &'a [u8], limits: &HeaderLimits) -> Result<Self> {
        let (header, data) = Header::parse_file(bytes, limits)?;
        Ok(SafeTensors { header, data })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The `__metadata__` map, if any.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.header.metadata()
    }

    /// The data section.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.header.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.header.is_empty()
    }

    /// One tensor by name.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.header.tensor(name)?;
        Ok(self.view(info))
    }

    /// All tensors in data-offset order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.header.tensors().map(|info| self.view(info))
    }

    fn view<'s>(&'s self, info: TensorEntry<'s>) -> TensorView<'s> {
        // Validation guarantees every range lies inside the data section.
        let data = &self.data[info.begin as usize..info.end as usize];
        TensorView { info, data }
    }
}

/// A tensor borrowed from a buffer or a mapped file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    info: TensorEntry<'a>,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Builds a view from header info and the tensor's bytes.
    pub fn new(info: TensorEntry<'a>, data: &'a [u8]) -> Self {
        TensorView { info, data }
    }

    /// Tensor name.
    pub fn name(&self) -> &'a str {
        self.info.name
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }

    /// Dimensions.
    pub fn shape(&self) -> &'a [usize] {
        self.info.shape
    }

    /// Header entry.
    pub fn info(&self) -> TensorEntry<'a> {
        self.info
    }

    /// The tensor's bytes, row-major and little-endian.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Copies out a slice; returns its shape and bytes.
    pub fn slice(&self, args: &[SliceArg]) -> Result<(Vec<usize>, Vec<u8>)> {
        let selection = slice::plan(self.name(), self.shape(), args)?;
        let bytes = slice::gather(
            self.name(),
            self.dtype(),
            self.shape(),
            self.data,
            &selection,
        )?;
        Ok((selection.shape(), bytes))
    }
}
