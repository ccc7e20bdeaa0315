//! What is wrong with a declared file, and where: `file:line:column: field: message`.

use std::fmt;

use marked_yaml::{Marker, Span};
use serde::Serialize;

/// One thing wrong with one file. `line` and `column` are 1-based; 0 when the parser could
/// not tell (a field that is missing altogether is reported where its mapping starts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DeclaredFileProblem)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field's path in the file, e.g. `members[2].roles[0]`; empty for the file itself.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn at(
        file: &str,
        marker: Option<&Marker>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line: marker.map_or(0, Marker::line),
            column: marker.map_or(0, Marker::column),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn spanned(
        file: &str,
        span: &Span,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::at(file, span.start(), field, message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
