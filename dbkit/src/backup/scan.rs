//! Where a dump's statements begin and end: the lexer of psql's script format.
//!
//! A plain dump is a psql script: SQL statements, COPY data up to `\.`, and possibly backslash
//! meta-commands (`\!` runs a shell command, `\connect` switches databases). This scanner follows
//! psql's own lexer (strings, `E''` escapes, `standard_conforming_strings` as the dump sets it,
//! quoted identifiers, dollar quotes, nested comments, parentheses, `BEGIN ATOMIC` bodies, COPY
//! data) and hands out the pieces in order: each statement's text and its end, with the words that
//! say what it is, and each COPY's data. It refuses, with its line, any meta-command but pg_dump's
//! own `\restrict KEY` (first) and `\unrestrict KEY` (last) lines (left out), any transaction
//! control, any COPY but `FROM stdin`, and any change of `standard_conforming_strings` but
//! pg_dump's `SET standard_conforming_strings = on|off;`. What each statement may do is
//! [`statement`](super::statement)'s to judge; the restore sends each one alone, so the server
//! refuses a statement this scanner would have cut elsewhere.

use std::fmt;

/// A line of the dump that would make psql do something else than run a dump's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// 1-based, in the decompressed SQL.
    pub line: u64,
    pub what: String,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} of the backup's SQL: {}; a backup may only hold SQL statements", self.line, self.what)
    }
}

impl std::error::Error for Forbidden {}

/// The fix for a [`Forbidden`] line.
pub const FORBIDDEN_HINT: &str = "this file is not what pg_dump wrote (it was edited or crafted): do not restore it; \
look at the line with `gunzip -c FILE | sed -n 'LINEp'`, and take the backup again from the source database";

/// A piece of the dump, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text of the current statement (with the comments before it).
    Sql(&'a [u8]),
    /// The statement whose text came before ends here (its `;` was the last byte).
    End(&'a Words),
    /// Data of the COPY that just ended, lines as pg_dump wrote them (the `\.` line left out).
    CopyData(&'a [u8]),
    /// The COPY's data is complete.
    CopyEnd,
}

/// What the scanner saw of a statement: enough to tell what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words {
    /// The line it starts on (1-based, in the decompressed SQL).
    pub line: u64,
    /// Its first words, uppercased (a quoted identifier is `""`).
    pub first: Vec<String>,
    /// Its last three words.
    pub last: [String; 3],
    /// `ON` appeared outside parentheses (a GRANT of privileges, not of a role).
    pub on_at_top: bool,
    /// It holds a string or dollar-quoted text.
    pub has_string: bool,
}

impl Words {
    /// The first words, as `&str`s.
    pub fn first(&self) -> Vec<&str> {
        self.first.iter().map(String::as_str).collect()
    }
}

const FIRST_WORDS: usize = 8;
/// A dollar-quote tag longer than this is no dump's.
const TAG_MAX: usize = 1024;
/// Bytes of an identifier kept: enough for any keyword; a longer name is not a keyword.
const WORD_MAX: usize = 64;

const TRANSACTION_CONTROL: &[&str] = &["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END", "ABORT"];
const META_LINE_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    /// After `-` in Normal: a comment if another `-` follows.
    Dash,
    /// After `/` in Normal: a comment if `*` follows.
    Slash,
    LineComment,
    /// Nested `/* */` comments, with what the previous byte may start.
    Block {
        depth: u32,
        star: bool,
        slash: bool,
    },
    /// `'...'` (`escapes`: an `E'...'` string, where backslash escapes the next byte).
    Single {
        escapes: bool,
        backslash: bool,
        quote: bool,
    },
    /// After a string's closing quote: blanks and `--` comments, and, once a newline went by,
    /// a quote continues the string (with its escapes).
    StringEnd {
        escapes: bool,
        newline: bool,
        dash: bool,
        comment: bool,
    },
    /// `"..."`, `""` inside.
    Double {
        quote: bool,
    },
    /// Reading a possible dollar-quote tag after `$`.
    DollarTag,
    /// Inside `$tag$...$tag$`; `matched` bytes of the closing tag seen.
    Dollar {
        matched: usize,
    },
    Identifier,
    /// A number, with what psql lexes as part of it (`1e`, `123abc`): what follows may not
    /// start an `E''` string.
    Number,
    /// `$1`'s digits.
    Param,
    /// What follows a number without a blank (`1x$y`, `$1abc`): one token to Postgres's lexer
    /// (an error, or a parameter's junk), never the start of a string or a dollar quote.
    Junk,
    /// The rest of a `COPY ... FROM stdin;` line: only blanks, then the data.
    AfterCopy,
    /// A backslash line, buffered to its end.
    Meta {
        at_line_start: bool,
    },
    /// COPY data lines, up to a line `\.`; `matched` bytes of `\.` at this line's start, or None mid-line.
    CopyData {
        matched: Option<u8>,
    },
}

/// Scans a dump's SQL as it streams by, chunk after chunk.
pub struct Scanner {
    state: State,
    line: u64,
    line_has_text: bool,
    buf: Vec<u8>,
    tag: Vec<u8>,
    paren: u32,
    begin_depth: u32,
    words: Words,
    /// The start of the current single-quoted string, uppercased, to spot `set_config('standard_conforming_strings', ...)`.
    string_start: Vec<u8>,
    in_statement: bool,
    restrict_key: Option<String>,
    unrestricted: bool,
    statements: u64,
    /// The statement is a `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (its first words said so).
    routine: bool,
    /// How plain `'...'` strings read: `standard_conforming_strings` as the dump set it.
    standard_strings: bool,
    /// What the byte just stepped over did.
    event: Event,
    /// Where, in the chunk being fed, the current COPY data line starts (None: in an earlier chunk).
    copy_line: Option<usize>,
    /// Bytes of a possible `\.` line held back at the end of the last chunk.
    copy_held: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    None,
    StatementEnd,
    CopyStart,
    CopyEnd,
}

/// A possible end-of-data line, as far as it went: `\`, `\.`, `\.\r`.
const COPY_END: &[u8] = b"\\.\r";

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            state: State::Normal,
            line: 1,
            line_has_text: false,
            buf: Vec::new(),
            tag: Vec::new(),
            paren: 0,
            begin_depth: 0,
            words: Words::default(),
            string_start: Vec::new(),
            in_statement: false,
            restrict_key: None,
            unrestricted: false,
            statements: 0,
            routine: false,
            standard_strings: true,
            event: Event::None,
            copy_line: None,
            copy_held: 0,
        }
    }

    /// How many statements went by.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Scans `chunk`; `emit` gets its pieces in order (pg_dump's `\restrict` lines left out).
    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Piece<'_>)) -> Result<(), Forbidden> {
        let emit = &mut |piece: Piece<'_>| match piece {
            Piece::Sql([]) | Piece::CopyData([]) => {}
            piece => emit(piece),
        };
        let mut emitted = 0;
        let mut i = 0;
        self.copy_line = None;
        while i < chunk.len() {
            if let State::CopyData { matched: None } = self.state {
                // The fast path through table data: straight to the next line start.
                match memchr::memchr(b'\n', &chunk[i..]) {
                    Some(at) => {
                        i += at + 1;
                        self.line += 1;
                        self.state = State::CopyData { matched: Some(0) };
                        self.copy_line = Some(i);
                        continue;
                    }
                    None => break,
                }
            }
            let byte = chunk[i];
            if let State::Meta { .. } = self.state {
                self.meta_byte(chunk, i, &mut emitted, emit)?;
                i += 1;
                continue;
            }
            if self.step(byte)? {
                // Reprocess this byte in the state `step` moved to.
                continue;
            }
            self.emit_stepped(chunk, i, &mut emitted, emit);
            if self.state == (State::CopyData { matched: Some(0) }) && byte == b'\n' {
                self.copy_line = Some(i + 1);
            }
            i += 1;
        }
        self.emit_rest(chunk, emitted, emit);
        Ok(())
    }

    /// A byte of a backslash line, buffered; at its newline the line is judged, and left out
    /// (with its newline) when it is one of pg_dump's `\restrict` lines. `emitted`: how much of
    /// `chunk` went out.
    fn meta_byte(
        &mut self,
        chunk: &[u8],
        i: usize,
        emitted: &mut usize,
        emit: &mut impl FnMut(Piece<'_>),
    ) -> Result<(), Forbidden> {
        let byte = chunk[i];
        if byte == b'\n' {
            let stripped = self.end_meta_line()?;
            if stripped {
                // Leave out the line, its newline too.
                let start = i.saturating_sub(self.buf.len());
                emit(Piece::Sql(&chunk[*emitted..start.max(*emitted)]));
                *emitted = i + 1;
            }
            self.buf.clear();
            self.state = State::Normal;
            self.newline();
        } else if self.buf.len() < META_LINE_MAX {
            self.buf.push(byte);
        } else {
            return Err(self.meta_error());
        }
        Ok(())
    }

    /// Hands out what the byte at `i` completed: held bytes of a possible `\.` line that turned
    /// out to be data, then the statement, COPY line or COPY data the byte ended.
    fn emit_stepped(&mut self, chunk: &[u8], i: usize, emitted: &mut usize, emit: &mut impl FnMut(Piece<'_>)) {
        if self.copy_held > 0 && !matches!(self.state, State::CopyData { matched: Some(1..) }) {
            // The held bytes were data after all, unless they ended it.
            if self.event != Event::CopyEnd {
                emit(Piece::CopyData(&COPY_END[..self.copy_held]));
            }
            self.copy_held = 0;
        }
        match std::mem::replace(&mut self.event, Event::None) {
            Event::None => {}
            Event::StatementEnd => {
                emit(Piece::Sql(&chunk[*emitted..=i]));
                emit(Piece::End(&self.words));
                self.words = Words::default();
                *emitted = i + 1;
            }
            Event::CopyStart => {
                // The rest of the COPY line: blanks.
                emit(Piece::Sql(&chunk[*emitted..=i]));
                *emitted = i + 1;
                self.copy_line = Some(i + 1);
            }
            Event::CopyEnd => {
                let data_end = self.copy_line.unwrap_or(*emitted).max(*emitted);
                emit(Piece::CopyData(&chunk[*emitted..data_end]));
                emit(Piece::CopyEnd);
                *emitted = i + 1;
            }
        }
    }

    /// The end of the chunk: the rest of it goes out, but for what the next chunk must judge
    /// first (a meta line cut short, a line start that may be `\.`), held back.
    fn emit_rest(&mut self, chunk: &[u8], emitted: usize, emit: &mut impl FnMut(Piece<'_>)) {
        match self.state {
            // A meta line cut by the chunk's end: hold it back until it is judged.
            State::Meta { .. } => {
                let held = self.buf.len().min(chunk.len() - emitted);
                emit(Piece::Sql(&chunk[emitted..chunk.len() - held]));
            }
            State::CopyData { matched } => {
                // A line start that may be `\.`: hold it back until the next chunk says.
                let held = match (matched, self.copy_line) {
                    (Some(k @ 1..), Some(start)) if start >= emitted => {
                        self.copy_held = k as usize;
                        chunk.len() - start
                    }
                    (Some(k @ 1..), _) => {
                        self.copy_held = k as usize;
                        chunk.len() - emitted
                    }
                    _ => 0,
                };
                emit(Piece::CopyData(&chunk[emitted..chunk.len() - held]));
            }
            _ => emit(Piece::Sql(&chunk[emitted..])),
        }
    }

    /// The end of the SQL: a dangling meta line is judged; an unfinished statement or COPY is refused.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Piece<'_>)) -> Result<(), Forbidden> {
        if let State::Meta { .. } = self.state {
            if !self.end_meta_line()? {
                let held = std::mem::take(&mut self.buf);
                emit(Piece::Sql(&held));
            }
            self.state = State::Normal;
        }
        if let State::CopyData { .. } | State::AfterCopy = self.state {
            return Err(self.forbidden("COPY data without its end (`\\.`)".into()));
        }
        Ok(())
    }

    /// The statement under way, if any (the end of the SQL without a `;`).
    pub fn unfinished(&self) -> Option<&Words> {
        self.in_statement.then_some(&self.words)
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_has_text = false;
    }

    /// One byte; true when the byte must be seen again in the new state. The states whose
    /// transitions take more than a few lines have a method each.
    fn step(&mut self, byte: u8) -> Result<bool, Forbidden> {
        use State::*;
        match self.state {
            Normal => self.normal(byte),
            Dash => self.comment_start(byte, b'-', LineComment),
            Slash => self.comment_start(byte, b'*', Block { depth: 1, star: false, slash: false }),
            LineComment => {
                if byte == b'\n' {
                    self.state = Normal;
                    self.newline();
                }
                Ok(false)
            }
            Block { depth, star, slash } => {
                self.block_comment(byte, depth, star, slash);
                Ok(false)
            }
            Single { escapes, backslash, quote } => self.single_quoted(byte, escapes, backslash, quote),
            StringEnd { escapes, newline, dash, comment } => Ok(self.string_end(byte, escapes, newline, dash, comment)),
            Double { quote } => Ok(self.double_quoted(byte, quote)),
            DollarTag => self.dollar_tag(byte),
            Param => {
                if byte.is_ascii_digit() {
                    return Ok(false);
                }
                self.state = Normal;
                Ok(true)
            }
            Dollar { matched } => {
                self.dollar_quoted(byte, matched);
                Ok(false)
            }
            Identifier => self.identifier(byte),
            Number => {
                if is_ident_start(byte) {
                    self.state = Junk;
                    return Ok(false);
                }
                if byte.is_ascii_digit() || byte == b'.' {
                    return Ok(false);
                }
                self.state = Normal;
                Ok(true)
            }
            Junk => {
                if is_ident_cont(byte) {
                    return Ok(false);
                }
                self.state = Normal;
                Ok(true)
            }
            AfterCopy => {
                self.after_copy(byte)?;
                Ok(false)
            }
            CopyData { matched } => {
                self.copy_data(byte, matched);
                Ok(false)
            }
            Meta { .. } => unreachable!("meta lines are buffered by feed"),
        }
    }

    /// After `-` or `/` in Normal: the comment `comment` when `second` follows, else an operator
    /// (part of a statement) and the byte read again.
    fn comment_start(&mut self, byte: u8, second: u8, comment: State) -> Result<bool, Forbidden> {
        self.state = State::Normal;
        if byte == second {
            self.state = comment;
            return Ok(false);
        }
        self.start_token()?;
        Ok(true)
    }

    /// Inside nested `/* */` comments.
    fn block_comment(&mut self, byte: u8, depth: u32, star: bool, slash: bool) {
        use State::*;
        if byte == b'\n' {
            self.newline();
        }
        self.state = if star && byte == b'/' {
            if depth == 1 { Normal } else { Block { depth: depth - 1, star: false, slash: false } }
        } else if slash && byte == b'*' {
            Block { depth: depth + 1, star: false, slash: false }
        } else {
            Block { depth, star: byte == b'*', slash: byte == b'/' }
        };
    }

    /// Inside `'...'`: after its closing quote, the string may go on (`''`, or a quote after a
    /// newline); `set_config('standard_conforming_strings', ...)` is refused there.
    fn single_quoted(&mut self, byte: u8, escapes: bool, backslash: bool, quote: bool) -> Result<bool, Forbidden> {
        use State::*;
        if quote {
            if byte == b'\'' {
                self.state = Single { escapes, backslash: false, quote: false };
                return Ok(false);
            }
            // Maybe continued: Postgres and psql join `'a'` and `'b'` parted by a newline.
            self.state = StringEnd { escapes, newline: false, dash: false, comment: false };
            if self
                .string_start
                .strip_suffix(b"'")
                .is_some_and(|s| s.eq_ignore_ascii_case(b"standard_conforming_strings"))
            {
                return Err(self.forbidden("a change of `standard_conforming_strings`".into()));
            }
            return Ok(true);
        }
        if byte == b'\n' {
            self.newline();
        }
        if self.string_start.len() < 40 {
            self.string_start.push(byte);
        }
        self.state = match (backslash, byte) {
            (true, _) => Single { escapes, backslash: false, quote: false },
            (false, b'\\') if escapes => Single { escapes, backslash: true, quote: false },
            (false, b'\'') => Single { escapes, backslash: false, quote: true },
            _ => Single { escapes, backslash: false, quote: false },
        };
        Ok(false)
    }

    /// After a string's closing quote: blanks and `--` comments, then either its continuation
    /// (a quote once a newline went by) or the next token; true when the byte is to be seen again.
    fn string_end(&mut self, byte: u8, escapes: bool, newline: bool, dash: bool, comment: bool) -> bool {
        use State::*;
        let at_newline = matches!(byte, b'\n' | b'\r');
        if at_newline {
            self.newline();
        }
        self.state = match byte {
            _ if comment => StringEnd { escapes, newline: newline || at_newline, dash: false, comment: !at_newline },
            b'-' if dash => StringEnd { escapes, newline, dash: false, comment: true },
            _ if dash => {
                // A lone `-` after the string: an operator, read as Normal reads it.
                self.state = Dash;
                return true;
            }
            b'-' => StringEnd { escapes, newline, dash: true, comment: false },
            b' ' | b'\t' | b'\x0c' | b'\x0b' | b'\n' | b'\r' => {
                StringEnd { escapes, newline: newline || at_newline, dash: false, comment: false }
            }
            b'\'' if newline => Single { escapes, backslash: false, quote: false },
            _ => {
                self.state = Normal;
                return true;
            }
        };
        false
    }

    /// Inside `"..."`: a quoted identifier, a word of its own (`""`); true when the byte is to be
    /// seen again.
    fn double_quoted(&mut self, byte: u8, quote: bool) -> bool {
        if quote {
            if byte == b'"' {
                self.state = State::Double { quote: false };
                return false;
            }
            self.word(String::from("\"\""));
            self.state = State::Normal;
            return true;
        }
        if byte == b'\n' {
            self.newline();
        }
        self.state = State::Double { quote: byte == b'"' };
        false
    }

    /// After `$`: a dollar-quote tag up to its closing `$`, a parameter (`$1`), or neither.
    fn dollar_tag(&mut self, byte: u8) -> Result<bool, Forbidden> {
        use State::*;
        if byte == b'$' {
            self.tag.push(b'$');
            self.state = Dollar { matched: 0 };
            self.words.has_string = true;
            return Ok(false);
        }
        let first = self.tag.len() == 1;
        if is_ident_start(byte) || (!first && byte.is_ascii_digit()) {
            if self.tag.len() > TAG_MAX {
                return Err(self.forbidden(format!("a dollar-quote tag over {TAG_MAX} bytes")));
            }
            self.tag.push(byte);
            return Ok(false);
        }
        if first && byte.is_ascii_digit() {
            // `$1`: a parameter; what follows it starts a token of its own.
            self.tag.clear();
            self.state = Param;
            return Ok(false);
        }
        // Not a quote (`$` in an operator, `$E'...'`): as Postgres's lexer does, only the
        // `$` is taken; what followed it is read again, as the identifier it was.
        self.state = if self.tag.len() > 1 {
            self.buf.clear();
            self.buf.extend_from_slice(&self.tag[1..]);
            Identifier
        } else {
            Normal
        };
        self.tag.clear();
        Ok(true)
    }

    /// Inside `$tag$...$tag$`, `matched` bytes of the closing tag seen.
    fn dollar_quoted(&mut self, byte: u8, matched: usize) {
        if byte == b'\n' {
            self.newline();
        }
        let matched = if byte == self.tag[matched] {
            matched + 1
        } else if byte == b'$' {
            1
        } else {
            0
        };
        if matched == self.tag.len() {
            self.tag.clear();
            self.state = State::Normal;
        } else {
            self.state = State::Dollar { matched };
        }
    }

    /// An identifier or keyword, taken as a word at its end; `E'`, `N'`, `B'` and `X'` start
    /// strings instead.
    fn identifier(&mut self, byte: u8) -> Result<bool, Forbidden> {
        if is_ident_cont(byte) {
            if self.buf.len() < WORD_MAX {
                self.buf.push(byte);
            }
            return Ok(false);
        }
        let word = String::from_utf8_lossy(&self.buf).to_ascii_uppercase();
        self.buf.clear();
        self.state = State::Normal;
        if byte == b'\'' && matches!(word.as_str(), "E" | "N" | "B" | "X") {
            self.words.has_string = true;
            self.string_start.clear();
            self.state = State::Single { escapes: word == "E", backslash: false, quote: false };
            return Ok(false);
        }
        self.word(word);
        self.check_words()?;
        Ok(true)
    }

    /// The rest of a `COPY ... FROM stdin;` line: blanks, then the data from the next line.
    fn after_copy(&mut self, byte: u8) -> Result<(), Forbidden> {
        match byte {
            b'\n' => {
                self.line += 1;
                self.state = State::CopyData { matched: Some(0) };
                self.event = Event::CopyStart;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => return Err(self.forbidden("text after `COPY ... FROM stdin;` on its line".into())),
        }
        Ok(())
    }

    /// At the start of a COPY data line (`matched` is Some here: [`Scanner::feed`] skips the
    /// rest of a line), matching the `\.` that ends the data.
    fn copy_data(&mut self, byte: u8, matched: Option<u8>) {
        use State::*;
        let matched = matched.unwrap_or(0);
        self.state = match (matched, byte) {
            (0, b'\\') => CopyData { matched: Some(1) },
            (1, b'.') => CopyData { matched: Some(2) },
            (2 | 3, b'\n') => {
                self.newline();
                self.event = Event::CopyEnd;
                Normal
            }
            (2, b'\r') => CopyData { matched: Some(3) },
            (_, b'\n') => {
                self.line += 1;
                CopyData { matched: Some(0) }
            }
            _ => CopyData { matched: None },
        };
    }

    fn normal(&mut self, byte: u8) -> Result<bool, Forbidden> {
        match byte {
            b'\n' => self.newline(),
            b' ' | b'\t' | b'\r' | b'\x0c' => {}
            b'-' => self.state = State::Dash,
            b'/' => self.state = State::Slash,
            b'\\' => {
                self.state = State::Meta { at_line_start: !self.line_has_text };
                self.buf.clear();
                self.buf.push(b'\\');
            }
            b'\'' => {
                self.start_token()?;
                self.words.has_string = true;
                self.string_start.clear();
                // With standard_conforming_strings off, a plain string reads backslashes as E'' does.
                self.state = State::Single { escapes: !self.standard_strings, backslash: false, quote: false };
            }
            b'"' => {
                self.start_token()?;
                self.state = State::Double { quote: false };
            }
            b'$' => {
                self.start_token()?;
                self.tag.clear();
                self.tag.push(b'$');
                self.state = State::DollarTag;
            }
            b'(' => {
                self.start_token()?;
                self.paren += 1;
            }
            b')' => {
                self.start_token()?;
                self.paren = self.paren.saturating_sub(1);
            }
            b';' => {
                self.start_token()?;
                if self.paren == 0 && self.begin_depth == 0 {
                    self.end_statement()?;
                }
            }
            byte if byte.is_ascii_digit() => {
                self.start_token()?;
                self.state = State::Number;
            }
            byte if is_ident_start(byte) => {
                self.start_token()?;
                self.buf.clear();
                self.buf.push(byte);
                self.state = State::Identifier;
            }
            _ => self.start_token()?,
        }
        Ok(false)
    }

    /// Something that is not a comment or blank: part of a statement.
    fn start_token(&mut self) -> Result<(), Forbidden> {
        self.line_has_text = true;
        if !self.in_statement {
            if self.unrestricted {
                return Err(self.forbidden("SQL after pg_dump's closing `\\unrestrict`".into()));
            }
            self.in_statement = true;
            self.words.line = self.line;
        }
        Ok(())
    }

    fn word(&mut self, word: String) {
        let known = self.words.first.len();
        if known < FIRST_WORDS {
            self.words.first.push(word.clone());
        }
        if self.paren == 0 && word == "ON" {
            self.words.on_at_top = true;
        }
        // psql's heuristic for `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END`:
        // semicolons inside do not end the statement. Decided by the first four words.
        if known < 4 {
            let first = self.words.first();
            self.routine = matches!(first.as_slice(), ["CREATE", "FUNCTION" | "PROCEDURE", ..])
                || matches!(first.as_slice(), ["CREATE", "OR", "REPLACE", "FUNCTION" | "PROCEDURE", ..]);
        }
        if self.routine && self.paren == 0 {
            match word.as_str() {
                "BEGIN" => self.begin_depth += 1,
                "CASE" if self.begin_depth > 0 => self.begin_depth += 1,
                "END" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        let last = &mut self.words.last;
        last.rotate_left(1);
        last[2] = word;
    }

    /// Refuses transaction control and settings that change how strings read, as soon as the
    /// statement's first words say so.
    fn check_words(&self) -> Result<(), Forbidden> {
        if self.words.first.len() > 2 {
            return Ok(());
        }
        let words = self.words.first();
        let refuse = |what: String| Err(self.forbidden(what));
        match words.as_slice() {
            [first] if TRANSACTION_CONTROL.contains(first) => {
                refuse(format!("transaction control `{first}` (a restore is one transaction, ended by the restore)"))
            }
            ["START" | "PREPARE", "TRANSACTION"] => refuse(format!("transaction control `{} TRANSACTION`", words[0])),
            ["RESET", "ALL" | "STANDARD_CONFORMING_STRINGS"] => {
                refuse(format!("`RESET {}` (strings would read differently)", words[1].to_ascii_lowercase()))
            }
            _ => Ok(()),
        }
    }

    fn end_statement(&mut self) -> Result<(), Forbidden> {
        let words = &self.words;
        let copy = words.first.first().is_some_and(|w| w == "COPY");
        if copy && (words.last[1..] != ["FROM", "STDIN"] || words.has_string) {
            return Err(
                self.forbidden("a COPY other than `COPY table (columns) FROM stdin;` (pg_dump's only form)".into())
            );
        }
        let sets_strings = matches!(
            words.first().as_slice(),
            ["SET", "STANDARD_CONFORMING_STRINGS", ..]
                | ["SET", "SESSION" | "LOCAL", "STANDARD_CONFORMING_STRINGS", ..]
        );
        if sets_strings {
            // pg_dump's own line, `SET standard_conforming_strings = on|off;`: followed.
            match (words.first().as_slice(), words.last[2].as_str(), words.has_string) {
                (["SET", _, "ON" | "OFF"], value, false) if words.first.len() == 3 => {
                    self.standard_strings = value == "ON";
                }
                _ => {
                    return Err(self.forbidden(
                        "a change of `standard_conforming_strings` other than pg_dump's `SET standard_conforming_strings = on|off;`".into(),
                    ));
                }
            }
        }
        self.statements += 1;
        self.in_statement = false;
        self.begin_depth = 0;
        self.routine = false;
        self.event = Event::StatementEnd;
        if copy {
            // Data starts on the next line; the rest of this one is psql's to ignore.
            self.state = State::AfterCopy;
        }
        Ok(())
    }

    /// Judges a complete backslash line: true when it is one of pg_dump's `\restrict` lines,
    /// to be left out.
    fn end_meta_line(&mut self) -> Result<bool, Forbidden> {
        let State::Meta { at_line_start } = self.state else { return Ok(false) };
        let text = String::from_utf8_lossy(&self.buf).trim_end_matches('\r').to_string();
        let mut parts = text.split_whitespace();
        let (command, key) = (parts.next().unwrap_or_default(), parts.next());
        let whole_line = at_line_start && parts.next().is_none();
        let key_ok = key.is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric()));
        match command {
            "\\restrict"
                if whole_line
                    && key_ok
                    && self.restrict_key.is_none()
                    && self.statements == 0
                    && !self.in_statement =>
            {
                self.restrict_key = key.map(str::to_owned);
                Ok(true)
            }
            "\\unrestrict"
                if whole_line && key.is_some() && key == self.restrict_key.as_deref() && !self.in_statement =>
            {
                self.unrestricted = true;
                Ok(true)
            }
            _ => Err(self.meta_error()),
        }
    }

    fn meta_error(&self) -> Forbidden {
        let text = String::from_utf8_lossy(&self.buf);
        let command: String = text.split_whitespace().next().unwrap_or("\\").chars().take(40).collect();
        let what = match command.as_str() {
            "\\connect" | "\\c" => "`\\connect`: a switch to another database".to_string(),
            "\\restrict" | "\\unrestrict" => format!("`{command}` that is not pg_dump's own (first and last lines)"),
            _ => format!("the psql meta-command `{command}` (a backslash outside a string)"),
        };
        self.forbidden(what)
    }

    fn forbidden(&self, what: String) -> Forbidden {
        Forbidden { line: self.line, what }
    }
}

fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn is_ident_cont(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

/// Scans a whole SQL text at once; its pieces put back together (COPY data ended by `\\.`).
#[cfg(test)]
fn scan_all(sql: &[u8]) -> Result<Vec<u8>, Forbidden> {
    let mut scanner = Scanner::new();
    let mut out = Vec::with_capacity(sql.len());
    let mut put = |piece: Piece<'_>| match piece {
        Piece::Sql(bytes) | Piece::CopyData(bytes) => out.extend_from_slice(bytes),
        Piece::CopyEnd => out.extend_from_slice(b"\\.\n"),
        Piece::End(_) => {}
    };
    scanner.feed(sql, &mut put)?;
    scanner.finish(&mut put)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> Forbidden {
        scan_all(sql.as_bytes()).expect_err(sql)
    }

    /// Every split of the text into two chunks scans as the whole does.
    fn same_in_pieces(sql: &str) -> Result<Vec<u8>, Forbidden> {
        let whole = scan_all(sql.as_bytes());
        for cut in 0..=sql.len() {
            let mut scanner = Scanner::new();
            let mut out = Vec::new();
            let mut put = |piece: Piece<'_>| match piece {
                Piece::Sql(bytes) | Piece::CopyData(bytes) => out.extend_from_slice(bytes),
                Piece::CopyEnd => out.extend_from_slice(b"\\.\n"),
                Piece::End(_) => {}
            };
            let result = scanner
                .feed(&sql.as_bytes()[..cut], &mut put)
                .and_then(|()| scanner.feed(&sql.as_bytes()[cut..], &mut put))
                .and_then(|()| scanner.finish(&mut put))
                .map(|()| out);
            assert_eq!(result, whole, "cut at {cut}: {sql:?}");
        }
        whole
    }

    #[test]
    fn sql_of_every_shape_passes() {
        let sql = "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\nSET standard_conforming_strings = on;\n\
            CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$ BEGIN RETURN '\\! no'; COMMIT; END $_$;\n\
            CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END;\n\
            COMMENT ON TABLE t IS 'it''s \\! fine';\nSELECT E'a\\'b \\\\', \"we\"\"ird\\\", $1, a$b;\n\
            /* a /* nested */ \\! comment */ -- \\! too\nCOPY public.t (a, b) FROM stdin;\n\\! data\nx\t\\\\.\n\\.\n\
            SELECT 1;\n\\unrestrict abc123\n\n--\n-- PostgreSQL database dump complete\n--\n";
        let out = same_in_pieces(sql).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("restrict abc123"), "{out}");
        assert!(out.contains("\\! data") && out.contains("BEGIN ATOMIC"));
        assert_eq!(out.len(), sql.len() - "\\restrict abc123\n".len() - "\\unrestrict abc123\n".len());
    }

    #[test]
    fn meta_commands_are_refused_with_their_line() {
        for (sql, line, needle) in [
            ("SELECT 1;\n\\! touch pwned\n", 2, "`\\!`"),
            ("SELECT 1 \\g |cat\n", 1, "`\\g`"),
            ("\\connect victim\nDROP TABLE x;\n", 1, "\\connect"),
            ("\\restrict a\n\\unrestrict a\n\\restrict b\n", 3, "not pg_dump's own"),
            ("\\restrict a\nSELECT 1;\n\\unrestrict b\n", 3, "not pg_dump's own"),
            ("SELECT 1;\n\\restrict a\n", 2, "not pg_dump's own"),
            ("\\restrict a\n\\unrestrict a\nDROP TABLE t;\n", 3, "after pg_dump's closing"),
            ("COPY t FROM stdin;\nx\n\\.\n\\o /tmp/x\n", 4, "`\\o`"),
            ("SELECT 'a' \\gexec\n", 1, "`\\gexec`"),
        ] {
            let err = refused(sql);
            assert_eq!(err.line, line, "{sql:?}: {err}");
            assert!(err.to_string().contains(needle), "{sql:?}: {err}");
            assert_eq!(same_in_pieces(sql), Err(err));
        }
    }

    #[test]
    fn transaction_control_and_string_mode_changes_are_refused() {
        for sql in [
            "CREATE TABLE a();\nCOMMIT;\n",
            "begin;",
            "  /* x */ Rollback;",
            "SAVEPOINT s;",
            "RELEASE s;",
            "END;",
            "ABORT;",
            "START TRANSACTION;",
            "PREPARE TRANSACTION 'x';",
            "SET SESSION standard_conforming_strings TO 'off';",
            "COPY t TO PROGRAM 'id';",
            "COPY t FROM '/etc/passwd';",
            "COPY (SELECT 1) TO STDOUT;",
            "COPY t FROM stdin; \\! id\nx\n\\.\n",
            "RESET ALL;",
            "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);",
            "SELECT 1e'\\' \\! id ';",
        ] {
            let err = refused(sql);
            assert_eq!(same_in_pieces(sql), Err(err), "{sql}");
        }
        assert!(scan_all(b"SET standard_conforming_strings = on;\nPREPARE p AS SELECT 1;\nSELECT 1 AS end_;").is_ok());
        // pg_dump's own line for a database whose strings are not standard: followed, not refused.
        assert!(scan_all(b"SET standard_conforming_strings = off;\nSELECT 'a\\'';\n").is_ok());
    }

    /// Every piece of `sql`, fed in two chunks cut at `cut`, as text: statements with their first
    /// words and line, COPY data as one string per COPY.
    fn pieces(sql: &str, cut: usize) -> Vec<String> {
        let mut scanner = Scanner::new();
        let mut out = vec![String::new()];
        let mut put = |piece: Piece<'_>| match piece {
            Piece::Sql(b) => out.last_mut().unwrap().push_str(std::str::from_utf8(b).unwrap()),
            Piece::CopyData(b) => {
                let last = out.last_mut().unwrap();
                if !last.starts_with("data:") {
                    out.push("data:".into());
                }
                out.last_mut().unwrap().push_str(std::str::from_utf8(b).unwrap());
            }
            Piece::End(w) => {
                let text = out.pop().unwrap();
                out.push(format!("{}@{} {}", w.first.join(" "), w.line, text.trim()));
                out.push(String::new());
            }
            Piece::CopyEnd => out.push(String::new()),
        };
        scanner.feed(&sql.as_bytes()[..cut], &mut put).unwrap();
        scanner.feed(&sql.as_bytes()[cut..], &mut put).unwrap();
        scanner.finish(&mut put).unwrap();
        out.retain(|p| !p.trim().is_empty());
        out
    }

    #[test]
    fn statements_and_copy_data_come_out_whole_however_the_input_is_cut() {
        let sql = "SET x = 1;\n-- c\nCOPY public.t (a) FROM stdin;\n\\N\n\\.x\n\\\\.\n\\.\nSELECT 'a;b';\nCOPY u FROM stdin;\n\\.\r\nDROP TABLE u;\n";
        let whole = pieces(sql, sql.len());
        assert_eq!(
            whole,
            [
                "SET X@1 SET x = 1;",
                "COPY PUBLIC T A FROM STDIN@3 -- c\nCOPY public.t (a) FROM stdin;",
                "data:\\N\n\\.x\n\\\\.\n",
                "SELECT@8 SELECT 'a;b';",
                "COPY U FROM STDIN@9 COPY u FROM stdin;",
                "DROP TABLE U@11 DROP TABLE u;",
            ]
        );
        for cut in 0..=sql.len() {
            assert_eq!(pieces(sql, cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn strings_read_as_the_dump_sets_standard_conforming_strings() {
        // Off: a backslash escapes the quote, so the `;` and COMMIT are inside the string.
        let off = "SET standard_conforming_strings = off;\nSELECT 'a\\' ; COMMIT ; --';\nSET standard_conforming_strings = on;\nSELECT 'b\\';\n";
        let statements: Vec<String> = pieces(off, off.len());
        assert_eq!(statements.len(), 4, "{statements:?}");
        assert!(statements[1].ends_with("SELECT 'a\\' ; COMMIT ; --';"), "{statements:?}");
        // On (the default): the same text ends the string at the backslash, and COMMIT is refused.
        let on = "SELECT 'a\\' ; COMMIT ; --';\n";
        assert!(refused(on).what.contains("COMMIT"), "{on}");
        for sql in [
            "SET standard_conforming_strings TO off;",
            "SET standard_conforming_strings = 'off';",
            "SET LOCAL standard_conforming_strings = off;",
        ] {
            assert!(refused(sql).what.contains("standard_conforming_strings"), "{sql}");
        }
    }

    #[test]
    fn a_huge_identifier_or_tag_takes_no_memory() {
        let mut scanner = Scanner::new();
        let chunk = vec![b'a'; 1 << 20];
        scanner.feed(b"CREATE TABLE ", &mut |_| ()).unwrap();
        for _ in 0..64 {
            scanner.feed(&chunk, &mut |_| ()).unwrap();
        }
        assert!(scanner.buf.capacity() <= 1024, "{}", scanner.buf.capacity());
        let tag = format!("SELECT ${}$", "t".repeat(5000));
        assert!(refused(&tag).what.contains("tag"));
    }
}

/// The scanner's statement boundaries against Postgres's own lexer (libpg_query's, behind the
/// `lint` feature): on generated text full of what makes lexers disagree, wherever both accept
/// it, both cut it into the same statements.
#[cfg(all(test, feature = "lint"))]
mod against_postgres {
    use super::*;

    /// What makes lexers disagree: quotes, escapes, dollar quotes, comments, `;` everywhere.
    const TOKENS: &[&str] = &[
        "SELECT",
        "CREATE",
        "x",
        "a$b",
        "E",
        "U&",
        "N",
        "B",
        "X",
        "e",
        "1",
        "1.5",
        "1e5",
        "0x1F",
        "'a'",
        "'it''s'",
        "'back\\'",
        "E'esc\\'q'",
        "E'\\\\'",
        "e'\\''",
        "'; COMMIT; --'",
        "$$ body ; $$",
        "$t$ ; $$ $t$",
        "$1",
        "$t$",
        "\"we\"\"ird;\"",
        "\"a\"",
        "-- note ;\n",
        "/* a /* ; */ */",
        "/* ' */",
        "--",
        "-",
        "/",
        "*",
        ";",
        ";",
        ";",
        "(",
        ")",
        ",",
        ".",
        "::",
        "+",
        "<",
        ">",
        "=",
        "'",
        "\"",
        "$",
        "\n",
        " ",
        "\t",
        "E'a\\\\'';'",
        "B'101'",
        "X'1F'",
        "N'n'",
        "U&'d\\0061t'",
        "x$y$",
        "$a$ $b$ ; $a$",
    ];

    /// xorshift64*: reproducible, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    /// Where our statements end (byte offsets just past their `;`).
    fn our_cuts(sql: &str) -> Option<Vec<usize>> {
        let mut scanner = Scanner::new();
        let (mut cuts, mut at) = (Vec::new(), 0);
        let mut put = |piece: Piece<'_>| match piece {
            Piece::Sql(bytes) | Piece::CopyData(bytes) => at += bytes.len(),
            Piece::End(_) => cuts.push(at),
            Piece::CopyEnd => {}
        };
        scanner.feed(sql.as_bytes(), &mut put).ok()?;
        scanner.finish(&mut put).ok()?;
        Some(cuts)
    }

    /// Where Postgres's lexer sees a `;` outside parentheses (psql's rule, which ours follows:
    /// inside them the server would refuse the text as two statements).
    fn postgres_cuts(sql: &str) -> Option<Vec<usize>> {
        let scanned = pg_query::scan(sql).ok()?;
        let mut depth = 0u32;
        let mut cuts = Vec::new();
        for token in &scanned.tokens {
            match &sql[token.start as usize..token.end as usize] {
                "(" => depth += 1,
                ")" => depth = depth.saturating_sub(1),
                ";" if depth == 0 => cuts.push(token.end as usize),
                _ => {}
            }
        }
        Some(cuts)
    }

    /// `RAILGUN_FUZZ_SEED` and `RAILGUN_FUZZ_ROUNDS` (default 50 000) try other and more inputs.
    #[test]
    fn statement_boundaries_agree_with_postgres() {
        let mut rng =
            Rng(std::env::var("RAILGUN_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x9E37_79B9_7F4A_7C15));
        let (mut compared, mut statements) = (0, 0);
        for _ in 0..(std::env::var("RAILGUN_FUZZ_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(50_000)) {
            let len = 1 + rng.next(24);
            let sql: String = (0..len)
                .map(|_| {
                    let token = TOKENS[rng.next(TOKENS.len())];
                    if rng.next(3) == 0 { token.to_string() } else { format!("{token} ") }
                })
                .collect();
            let Some(ours) = our_cuts(&sql) else { continue };
            let Some(theirs) = postgres_cuts(&sql) else { continue };
            assert_eq!(ours, theirs, "{sql:?}");
            compared += 1;
            statements += ours.len();
        }
        eprintln!("{compared} inputs, {statements} statements: the same boundaries");
        assert!(compared > 10_000 && statements > 10_000, "only {compared} inputs ({statements} statements) compared");
    }
}
