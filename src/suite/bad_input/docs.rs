//! The table as Markdown, for `docs/bad-input.md` and the README, which
//! carry it between two marker comments.

use super::{cli_rows, Row};

/// The line before the table in a Markdown file.
pub const MARKER_START: &str = "<!-- bad-input-table:start -->";
/// The line after the table in a Markdown file.
pub const MARKER_END: &str = "<!-- bad-input-table:end -->";

/// `rows` as a Markdown table: bad input, call, code (as `nvmfcheck bdev`
/// prints it), the fragment the message must contain, and whether the
/// `bad-input` case also sends it through `nvmfcheck bdev`.
pub fn markdown_table(rows: &[Row]) -> String {
    let cli = cli_rows(rows);
    let mut out = String::from(
        "| bad input | call | code | the message contains | also via CLI |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {:?} | {} | {} |\n",
            text(row.what),
            code_span(&row.call.to_string()),
            row.code,
            text(&row.says),
            if cli.contains(&row) { "yes" } else { "" },
        ));
    }
    out
}

/// Table cell text: `|` would end the cell and `<` could start an HTML tag.
fn text(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;")
}

fn code_span(s: &str) -> String {
    let s = s.replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{rows, Fixture};
    use super::*;

    /// Files that show the table: the first must, the others may (they are
    /// checked when they hold the markers).
    const FILES: &[&str] = &["docs/bad-input.md", "README.md"];

    /// `text` with what lies between the markers replaced by `table`, or `None`
    /// when it lacks the markers.
    fn splice(text: &str, table: &str) -> Option<String> {
        let start = text.find(MARKER_START)? + MARKER_START.len();
        let end = start + text[start..].find(MARKER_END)?;
        Some(format!("{}\n{table}{}", &text[..start], &text[end..]))
    }

    #[test]
    fn the_docs_show_the_bad_input_table() {
        let table = markdown_table(&rows(&Fixture::complete()));
        let update = std::env::var_os("UPDATE_DOCS").is_some();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut stale = Vec::new();
        for (i, file) in FILES.iter().enumerate() {
            let path = root.join(file);
            let Ok(old) = std::fs::read_to_string(&path) else {
                assert!(i > 0, "{file} is missing");
                continue;
            };
            let Some(new) = splice(&old, &table) else {
                assert!(
                    i > 0,
                    "{file} lacks the lines {MARKER_START} and {MARKER_END}"
                );
                continue;
            };
            if new == old {
                continue;
            }
            if update {
                std::fs::write(&path, new).unwrap();
            } else {
                stale.push(*file);
            }
        }
        assert!(
            stale.is_empty(),
            "the bad-input table in {stale:?} differs from nvmfcheck::suite::bad_input::rows(); \
             rewrite it with `UPDATE_DOCS=1 cargo test bad_input` and commit the result"
        );
    }

    #[test]
    fn splicing_replaces_only_between_the_markers() {
        let doc = format!("a\n{MARKER_START}\nold\n{MARKER_END}\nb\n");
        let new = splice(&doc, "| t |\n").unwrap();
        assert_eq!(new, format!("a\n{MARKER_START}\n| t |\n{MARKER_END}\nb\n"));
        assert_eq!(splice(&new, "| t |\n").unwrap(), new);
        assert_eq!(splice("no markers", "| t |\n"), None);
    }

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(text("a|b <c>"), "a\\|b &lt;c>");
        assert_eq!(code_span("x`y"), "`` x`y ``");
    }
}
