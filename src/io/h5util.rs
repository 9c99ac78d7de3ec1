//! Small HDF5 helpers (hdf5-metno) with errors that name the file and dataset.

use std::path::Path;

use hdf5::types::VarLenUnicode;

use crate::{Error, Result};

/// Maps an HDF5 error to one line naming the file and what was being done.
pub fn err<'a>(path: &'a Path, what: &str) -> impl Fn(hdf5::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::file(path, format!("{what}: {e}"))
}

pub fn set_str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = value.parse().map_err(|e| hdf5::Error::from(format!("{e:?}").as_str()))?;
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&v)
}

pub fn set_attr<T: hdf5::H5Type>(loc: &hdf5::Location, name: &str, value: T) -> hdf5::Result<()> {
    loc.new_attr::<T>().create(name)?.write_scalar(&value)
}

pub fn str_attr(loc: &hdf5::Location, name: &str) -> Option<String> {
    loc.attr(name).ok()?.read_scalar::<VarLenUnicode>().ok().map(|s| s.as_str().to_string())
}

pub fn num_attr<T: hdf5::H5Type>(loc: &hdf5::Location, name: &str) -> Option<T> {
    loc.attr(name).ok()?.read_scalar::<T>().ok()
}

/// Writes a 1-D dataset with a `units` attribute.
pub fn write_column<T: hdf5::H5Type>(group: &hdf5::Group, name: &str, data: &[T], units: &str) -> hdf5::Result<()> {
    let ds = group.new_dataset_builder().with_data(data).create(name)?;
    set_str_attr(&ds, "units", units)
}

/// Reads a whole 1-D dataset, naming it in the error. `expected_len` checks its length.
pub fn read_column<T: hdf5::H5Type>(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    expected_len: Option<usize>,
) -> Result<Vec<T>> {
    let ds = file.dataset(name).map_err(|_| Error::file(path, format!("missing dataset /{name}")))?;
    if ds.ndim() != 1 {
        return Err(Error::file(path, format!("dataset /{name} must be 1-D, found shape {:?}", ds.shape())));
    }
    let v = ds.read_raw::<T>().map_err(|e| Error::file(path, format!("dataset /{name}: {e}")))?;
    if let Some(n) = expected_len
        && v.len() != n
    {
        return Err(Error::file(path, format!("dataset /{name} has {} entries, expected {n}", v.len())));
    }
    Ok(v)
}

/// Opens an HDF5 file for reading with an error that says what is wrong.
pub fn open(path: &Path, what: &str) -> Result<hdf5::File> {
    if !path.exists() {
        return Err(Error::file(path, format!("{what} not found")));
    }
    hdf5::File::open(path).map_err(|e| Error::file(path, format!("not a readable HDF5 {what}: {e}")))
}
