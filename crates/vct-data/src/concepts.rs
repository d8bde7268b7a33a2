//! The concept index: sorted unique names, position = class index.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::DataError;

/// Concept names in sorted order; a concept's index is its position. Serialises as
/// a JSON list of names, to be saved with the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Concepts {
    names: Vec<String>,
}

impl Concepts {
    /// The index of `names` (sorted, duplicates removed); names must be non-empty
    /// and without control characters.
    pub fn new(mut names: Vec<String>) -> Result<Concepts, DataError> {
        for n in &names {
            if n.trim().is_empty() {
                return Err(DataError::Concept {
                    name: n.clone(),
                    reason: "empty or blank".into(),
                });
            }
            if n.chars().any(char::is_control) {
                return Err(DataError::Concept {
                    name: n.clone(),
                    reason: "contains control characters".into(),
                });
            }
        }
        names.sort();
        names.dedup();
        Ok(Concepts { names })
    }

    /// The names, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of concepts.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// The index of `name` (the same as [`Concepts::index`]).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index(name)
    }

    /// The name at `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Writes the index as a JSON list.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(&self.names).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text).map_err(io(path))
    }

    /// Reads an index written by [`Concepts::save`].
    pub fn load(path: &Path) -> Result<Concepts, DataError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let names: Vec<String> = serde_json::from_str(&text).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Concepts::new(names)
    }
}

impl TryFrom<Vec<String>> for Concepts {
    type Error = DataError;
    fn try_from(names: Vec<String>) -> Result<Self, DataError> {
        Concepts::new(names)
    }
}

impl From<Concepts> for Vec<String> {
    fn from(c: Concepts) -> Vec<String> {
        c.names
    }
}
