//! Tab completion at the shell's prompt: command names first; then, for `get`, the names
//! of the library's files (from the last listing: the shell lists at start, on `list`, and
//! adds what `put` uploaded); for `put` and after `-o`, local paths.
//!
//! Completion only has to find the word under the cursor, so it splits the line by hand,
//! quote-aware; the command itself is parsed by clap when the line is entered.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use std::cell::RefCell;
use std::rc::Rc;
use udpft::text::sanitize;

/// The commands the prompt takes, as completed (aliases too).
const COMMANDS: [&str; 8] = ["exit", "get", "help", "list", "ls", "put", "quit", "sum"];

/// The library names known to the shell, shared with the completer.
pub(crate) type Names = Rc<RefCell<Vec<String>>>;

/// The shell's rustyline helper: completion only (no hints, colours or validation).
pub(crate) struct ShellHelper {
    names: Names,
    files: FilenameCompleter,
}

impl ShellHelper {
    /// A helper completing remote names from `names`.
    pub(crate) fn new(names: Names) -> Self {
        Self {
            names,
            files: FilenameCompleter::new(),
        }
    }

    fn remote(&self, start: usize, prefix: &str) -> (usize, Vec<Pair>) {
        let names = self.names.borrow();
        let candidates = names
            .iter()
            // A name that would show differently from what it is cannot be offered.
            .filter(|name| name.starts_with(prefix) && sanitize(name) == **name)
            .filter_map(|name| {
                let quoted = shlex::try_quote(name).ok()?;
                Some(Pair {
                    display: name.clone(),
                    replacement: quoted.into_owned(),
                })
            })
            .collect();
        (start, candidates)
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let words = words_before(&line[..pos]);
        let Some((start, current)) = words.last() else {
            return Ok((0, Vec::new()));
        };
        if words.len() == 1 {
            let commands = COMMANDS
                .iter()
                .filter(|c| c.starts_with(current.as_str()))
                .map(|c| Pair {
                    display: (*c).to_owned(),
                    replacement: format!("{c} "),
                })
                .collect();
            return Ok((*start, commands));
        }
        let command = words[0].1.as_str();
        let previous = words[words.len() - 2].1.as_str();
        Ok(match (command, previous) {
            (_, "-o" | "--output") => self.files.complete_path(line, pos)?,
            ("put", "--as") | ("get", _) | ("sum", _) => self.remote(*start, current),
            ("put", _) => self.files.complete_path(line, pos)?,
            _ => (pos, Vec::new()),
        })
    }
}

/// The words of `text` with where each starts, unquoted (`'…'`, `"…"`, `\x`); the last is
/// the word being typed, empty if `text` ends in a space.
fn words_before(text: &str) -> Vec<(usize, String)> {
    let mut words: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut quote = None;
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if let Some(word) = current.take() {
                    words.push(word);
                }
                continue;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None | Some('"'), '\\') => {
                if let Some((_, escaped)) = chars.next() {
                    current.get_or_insert((at, String::new())).1.push(escaped);
                }
            }
            (_, c) => current.get_or_insert((at, String::new())).1.push(c),
        }
        current.get_or_insert((at, String::new()));
    }
    words.push(current.unwrap_or((text.len(), String::new())));
    words
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_and_unquoted_with_their_starts() {
        assert_eq!(
            words_before("get \"résumé 2026\" a\\ b "),
            [
                (0, "get".to_owned()),
                (4, "résumé 2026".to_owned()),
                (20, "a b".to_owned()),
                (25, String::new()),
            ]
        );
        assert_eq!(
            words_before("get 'half"),
            [(0, "get".into()), (4, "half".into())]
        );
        assert_eq!(words_before(""), [(0, String::new())]);
    }

    #[test]
    fn remote_names_are_completed_quoted_and_unsafe_ones_left_out() {
        let names: Names = Rc::new(RefCell::new(vec![
            "report 2026.pdf".into(),
            "report.txt".into(),
            "re\u{202e}txt.exe".into(),
            "other".into(),
        ]));
        let helper = ShellHelper::new(names);
        let (start, found) = helper.remote(4, "re");
        assert_eq!(start, 4);
        let replacements: Vec<&str> = found.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(replacements, ["'report 2026.pdf'", "report.txt"]);
    }
}
