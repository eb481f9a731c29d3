//! The statement reader's moves over its tokens: looking at the next words, eating keywords and
//! punctuation, skipping parentheses, reading a name, and recording what was touched where.

use super::reader::Reader;
use super::{Access, Kind, Object, Touch};
use crate::migration::sql::{self, Token};

impl<'a> Reader<'a> {
    /// `[schema.]name[.part]`: unquoted parts folded to lower case as Postgres folds them,
    /// quoted ones as written, `public.` left out. With its offset.
    pub(super) fn name(&mut self) -> Option<(String, usize)> {
        let mut parts = Vec::new();
        let at = self.offset();
        loop {
            match self.tokens.get(self.at) {
                Some((_, Token::Word(w))) => parts.push(w.to_lowercase()),
                Some((_, Token::Quoted(q))) => parts.push(q.clone()),
                _ => {
                    self.unread = true;
                    return None;
                }
            }
            self.advance();
            let dot = matches!(self.tokens.get(self.at), Some((_, Token::Punct('.'))));
            let named_next = matches!(self.tokens.get(self.at + 1), Some((_, Token::Word(_) | Token::Quoted(_))));
            if !(dot && named_next) {
                break;
            }
            self.advance();
        }
        if parts.len() > 1 && parts[0] == "public" {
            parts.remove(0);
        }
        Some((parts.join("."), at))
    }

    pub(super) fn at_name(&self) -> bool {
        matches!(self.tokens.get(self.at), Some((_, Token::Word(_) | Token::Quoted(_))))
    }

    pub(super) fn push(&mut self, object: Object, access: Access, offset: usize) {
        if object.kind == Kind::Table && access == Access::Uses && self.ctes.contains(&object.name) {
            return;
        }
        let line = self.line + sql::line_at(self.text, offset) - 1;
        self.touches.push(Touch { object, access, line });
    }

    pub(super) fn offset(&self) -> usize {
        self.tokens.get(self.at).map_or(self.text.len(), |(at, _)| *at)
    }

    pub(super) fn advance(&mut self) {
        self.at += 1;
    }

    pub(super) fn word_at(&self, ahead: usize) -> Option<String> {
        match self.tokens.get(self.at + ahead) {
            Some((_, Token::Word(w))) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub(super) fn is_word(&self, keyword: &str) -> bool {
        self.word_at(0).is_some_and(|w| w == keyword)
    }

    /// Consumes `keywords` if the next words are exactly they.
    pub(super) fn eat(&mut self, keywords: &[&str]) -> bool {
        let matches = keywords.iter().enumerate().all(|(n, k)| self.word_at(n).is_some_and(|w| w == *k));
        if matches {
            self.at += keywords.len();
        }
        matches
    }

    pub(super) fn eat_any(&mut self, keywords: &[&str]) -> bool {
        keywords.iter().any(|k| self.eat(&[k]))
    }

    /// [`Reader::eat`], or the statement is not read.
    pub(super) fn expect(&mut self, keywords: &[&str]) -> Option<()> {
        if self.eat(keywords) {
            Some(())
        } else {
            self.unread = true;
            None
        }
    }

    pub(super) fn eat_punct(&mut self, c: char) -> bool {
        let matches = matches!(self.tokens.get(self.at), Some((_, Token::Punct(p))) if *p == c);
        if matches {
            self.advance();
        }
        matches
    }

    pub(super) fn skip_parens(&mut self) {
        if !matches!(self.tokens.get(self.at), Some((_, Token::Punct('(')))) {
            return;
        }
        let mut depth = 0usize;
        while let Some((_, token)) = self.tokens.get(self.at) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth -= 1,
                _ => {}
            }
            self.advance();
            if depth == 0 {
                return;
            }
        }
    }

    /// Up to (not past) the next `,` or `)` outside parentheses, or the end.
    pub(super) fn skip_to_top_level_comma(&mut self) {
        let mut depth = 0usize;
        while let Some((_, token)) = self.tokens.get(self.at) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') if depth == 0 => return,
                Token::Punct(')') => depth -= 1,
                Token::Punct(',') if depth == 0 => return,
                _ => {}
            }
            self.advance();
        }
    }
}
