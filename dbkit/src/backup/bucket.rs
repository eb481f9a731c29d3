//! Backups in object storage (`s3://BUCKET/PREFIX`, any S3-compatible endpoint): written as a
//! multipart upload while pg_dump runs, so an object with a backup's name appears only when the
//! upload completes, after the whole backup checked out. Every upload in flight is recorded as
//! a marker object (`PREFIX/.railgun-upload-*`: the key and upload id, no data): a killed upload
//! is aborted, its parts deleted, by the next run ([`Remote::abort_unfinished`]).
//!
//! Credentials come from the usual variables (environment or `.env`): `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`) and
//! `AWS_ENDPOINT_URL` for another provider (R2, MinIO, ...). Requests are signed URLs sent over
//! HTTP; no URL, key or signature is ever printed.

use std::io::{self, Read, Write};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::progress::Progress;
use crate::context::Context;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Each part but the last, at first: 8 MiB, as `aws s3 cp` sends (S3's minimum is 5 MiB); see
/// [`part_size`].
const PART: usize = 8 << 20;
/// S3's most parts in one upload.
const MAX_PARTS: usize = 10_000;
/// The marker objects of uploads in flight, under the prefix.
const MARKER: &str = ".railgun-upload-";

/// A bucket and a prefix in it, with the credentials to use them.
pub struct Remote {
    bucket: Bucket,
    credentials: Credentials,
    /// Empty, or ending in `/`.
    prefix: String,
    agent: ureq::Agent,
    /// `s3://bucket/prefix/`, for messages.
    pub shown: String,
}

/// True when `target` names object storage rather than a folder.
pub fn is_remote(target: &str) -> bool {
    target.starts_with("s3://")
}

impl Remote {
    /// `s3://BUCKET[/PREFIX]`, with the credentials from the `AWS_*` settings.
    pub fn open(cx: &Context, target: &str) -> Result<Remote> {
        let rest = target
            .strip_prefix("s3://")
            .with_context(|| hint!("`{target}` is not an s3:// URL"; "name the bucket as s3://BUCKET/PREFIX"))?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            bail!(hint!("`{target}` names no bucket"; "name the bucket as s3://BUCKET/PREFIX"));
        }
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let setting = |key: &str| -> Result<Option<String>> { Ok(cx.setting(key)?.filter(|v| !v.is_empty())) };
        let missing = |key: &str| {
            anyhow!(
                hint!("{key} is not set, so the bucket cannot be reached"; "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (environment or .env; in CI, from the repository's secrets)")
            )
        };
        let key = setting("AWS_ACCESS_KEY_ID")?.ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret = setting("AWS_SECRET_ACCESS_KEY")?.ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let credentials = match setting("AWS_SESSION_TOKEN")? {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        };
        let region = match setting("AWS_REGION")? {
            Some(region) => region,
            None => setting("AWS_DEFAULT_REGION")?.unwrap_or_else(|| "us-east-1".into()),
        };
        let (endpoint, style) = match setting("AWS_ENDPOINT_URL")? {
            // Other providers and local servers: path-style works on all of them.
            Some(endpoint) => (endpoint, UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), UrlStyle::VirtualHost),
        };
        let endpoint: url::Url = endpoint.parse().with_context(
            || hint!("AWS_ENDPOINT_URL is not a URL"; "set it to the provider's S3 endpoint, e.g. https://ACCOUNT.r2.cloudflarestorage.com"),
        )?;
        let bucket = Bucket::new(endpoint, style, name.to_string(), region).map_err(|e| {
            anyhow!(hint!("cannot address bucket `{name}`: {e}"; "check the bucket's name and AWS_ENDPOINT_URL"))
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .build()
            .into();
        Ok(Remote { bucket, credentials, shown: format!("s3://{name}/{prefix}"), prefix, agent })
    }

    /// The object key of a backup named `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether an object named `name` (under the prefix) exists.
    pub fn exists(&self, name: &str) -> Result<bool> {
        let key = self.key(name);
        let url = self.bucket.head_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let response = self.agent.head(url.as_str()).call().map_err(|e| transport("look for", &key, e))?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(refused("look for", &key, status, String::new())),
        }
    }

    /// The objects directly under the prefix: (name without the prefix, size).
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(self.prefix.as_str());
            action.with_delimiter("/");
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let body = self.text("list", &self.prefix, self.agent.get(url.as_str()).call())?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&body)
                .map_err(|e| anyhow!("list {}: the answer does not parse: {e}", self.shown))?;
            for object in page.contents {
                if let Some(name) = object.key.strip_prefix(&self.prefix) {
                    objects.push((name.to_string(), object.size.unwrap_or(0)));
                }
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// The object named `name`, as it is read.
    pub fn get(&self, name: &str) -> Result<impl Read + Send + use<>> {
        self.get_sized(name).map(|(object, _)| object)
    }

    /// [`Remote::get`], with the object's size when the store says it.
    pub fn get_sized(&self, name: &str) -> Result<(impl Read + Send + use<>, Option<u64>)> {
        let key = self.key(name);
        let url = self.bucket.get_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let response = self.agent.get(url.as_str()).call().map_err(|e| transport("download", &key, e))?;
        match response.status().as_u16() {
            200 => {
                let size = response.body().content_length();
                Ok((response.into_body().into_reader(), size))
            }
            status => Err(refused("download", &key, status, String::new())),
        }
    }

    /// Deletes the object named `name`.
    pub fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name);
        let url = self.bucket.delete_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        self.text("delete", &key, self.agent.delete(url.as_str()).call()).map(drop)
    }

    /// Starts a multipart upload to `name`, recorded by a marker object until it completes or
    /// is aborted.
    pub fn upload(&self, name: &str) -> Result<Upload<'_>> {
        let key = self.key(name);
        let url = self.bucket.create_multipart_upload(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let body = self.text("start uploading", &key, self.agent.post(url.as_str()).send_empty())?;
        let id = rusty_s3::actions::CreateMultipartUpload::parse_response(&body)
            .map_err(|e| anyhow!("start uploading {key}: the answer does not parse: {e}"))?
            .upload_id()
            .to_string();
        let marker = format!("{MARKER}{}", crate::secret::random_hex(8)?);
        let mut upload = Upload {
            remote: self,
            key,
            id,
            marker,
            part: Vec::with_capacity(PART),
            parts: 0,
            sender: None,
            done: false,
            shown: Progress::hidden(),
        };
        upload.put_marker()?;
        Ok(upload)
    }

    /// Aborts the uploads that earlier runs started and never finished (killed: their marker
    /// objects are left), deleting their parts. One backup to a prefix at a time: a concurrent
    /// upload's marker would be taken for a killed one.
    pub fn abort_unfinished(&self) -> Result<()> {
        for (name, _) in self.list()? {
            if !name.starts_with(MARKER) {
                continue;
            }
            let mut text = String::new();
            self.get(&name)?.take(4096).read_to_string(&mut text).context("read an upload's marker")?;
            if let Some((key, id)) = text.split_once('\n')
                && key.starts_with(&self.prefix)
            {
                let url = self.bucket.abort_multipart_upload(Some(&self.credentials), key, id.trim()).sign(SIGNED_FOR);
                let response =
                    self.agent.delete(url.as_str()).call().map_err(|e| transport("abort the upload of", key, e))?;
                // 404: the upload is gone already (completed, aborted, or expired by a lifecycle rule).
                if !matches!(response.status().as_u16(), 200..=299 | 404) {
                    return Err(refused("abort the upload of", key, response.status().as_u16(), String::new()));
                }
                eprintln!("aborted an unfinished upload of {} (an earlier backup was stopped)", self.shown_key(key));
            }
            self.delete(&name)?;
        }
        Ok(())
    }

    fn shown_key(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }

    /// The body of a successful answer; an error that says what failed otherwise.
    fn text(
        &self,
        what: &str,
        key: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String> {
        let mut response = sent.map_err(|e| transport(what, key, e))?;
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(refused(what, key, status, body));
        }
        Ok(body)
    }
}

/// An error reaching the store: ureq's words name the host at most, never the signed URL.
fn transport(what: &str, key: &str, e: ureq::Error) -> anyhow::Error {
    let why = match e {
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => format!("{other}").split('?').next().unwrap_or_default().to_string(),
    };
    anyhow!(hint!("{what} {key}: {why}"; "check AWS_ENDPOINT_URL (or AWS_REGION) and the network"))
}

/// The store said no: its status and its error code (the XML's `<Code>`), never the request.
fn refused(what: &str, key: &str, status: u16, body: String) -> anyhow::Error {
    let code = body.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(code, _)| code);
    let code = code.map(|c| format!(" {}", crate::error::escaped(c))).unwrap_or_default();
    let fix = match status {
        401 | 403 => {
            "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the key's rights on the bucket"
        }
        404 => "check the bucket's name and AWS_ENDPOINT_URL / AWS_REGION",
        _ => "see the provider's status and try again",
    };
    anyhow!(hint!("{what} {key}: the store answered {status}{code}"; "{fix}"))
}

/// The size of the part after `sent` parts: [`PART`], doubled every 2000 parts (up to 128 MiB),
/// so that S3's 10 000 parts hold 496 GiB while a small backup's parts stay small.
fn part_size(sent: usize) -> usize {
    PART << (sent / 2000).min(4)
}

/// A multipart upload in progress: what is written goes up in parts ([`part_size`]), each
/// checked by the store against its Content-MD5, sent on a thread of their own while the next
/// part fills. Aborted (parts deleted) when dropped unfinished.
pub struct Upload<'a> {
    remote: &'a Remote,
    key: String,
    id: String,
    marker: String,
    part: Vec<u8>,
    /// Parts handed to the sender.
    parts: usize,
    sender: Option<Sender>,
    done: bool,
    shown: Progress,
}

/// The thread that sends the parts, in order, one at a time, one more waiting: the backup's
/// compression waits for the network only when two parts are ahead of it. Its result: the
/// parts' ETags.
struct Sender {
    parts: std::sync::mpsc::SyncSender<(u16, Vec<u8>)>,
    thread: std::thread::JoinHandle<Result<Vec<String>>>,
}

/// What sends a part of one upload (the remote's parts, cloned for the sender's thread).
struct PartPut {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
    key: String,
    id: String,
}

impl PartPut {
    /// Sends part `number`: its ETag.
    fn put(&self, number: u16, part: &[u8]) -> Result<String> {
        let url = self.bucket.upload_part(Some(&self.credentials), &self.key, number, &self.id).sign(SIGNED_FOR);
        let md5 = md5_base64(part);
        let sent = self.agent.put(url.as_str()).header("Content-MD5", &md5).send(part);
        let mut response = sent.map_err(|e| transport("upload a part of", &self.key, e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Err(refused("upload a part of", &self.key, status, body));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("upload a part of {}: no ETag in the answer", self.key))?;
        Ok(etag.to_string())
    }
}

impl Upload<'_> {
    /// Shows each part sent to `shown` (as bytes uploaded).
    pub fn show(&mut self, shown: &Progress) {
        self.shown = shown.clone();
    }

    fn put_marker(&mut self) -> Result<()> {
        let remote = self.remote;
        let key = remote.key(&self.marker);
        let url = remote.bucket.put_object(Some(&remote.credentials), &key).sign(SIGNED_FOR);
        let body = format!("{}\n{}\n", self.key, self.id);
        remote.text("record the upload in", &key, remote.agent.put(url.as_str()).send(body.as_bytes())).map(drop)
    }

    /// Hands the part filled to the sender (started with the first part).
    fn send_part(&mut self) -> Result<()> {
        if self.parts == MAX_PARTS {
            bail!("the backup needs more than {MAX_PARTS} parts, S3's most");
        }
        let number = u16::try_from(self.parts + 1).expect("at most 10 000 parts");
        let sender = match &self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.start_sender()),
        };
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(part_size(self.parts + 1)));
        if sender.parts.send((number, part)).is_err() {
            // The sender stopped on an error: that error says why.
            return Err(self.stop_sender().err().unwrap_or_else(|| anyhow!("the upload's sender stopped")));
        }
        self.parts += 1;
        Ok(())
    }

    fn start_sender(&self) -> Sender {
        let remote = self.remote;
        let put = PartPut {
            bucket: remote.bucket.clone(),
            credentials: remote.credentials.clone(),
            agent: remote.agent.clone(),
            key: self.key.clone(),
            id: self.id.clone(),
        };
        let shown = self.shown.clone();
        let (parts, received) = std::sync::mpsc::sync_channel::<(u16, Vec<u8>)>(1);
        let thread = std::thread::spawn(move || {
            let mut etags = Vec::new();
            for (number, part) in received {
                etags.push(put.put(number, &part)?);
                shown.uploaded(part.len() as u64);
            }
            Ok(etags)
        });
        Sender { parts, thread }
    }

    /// Waits for the parts handed over to be sent: their ETags, in order.
    fn stop_sender(&mut self) -> Result<Vec<String>> {
        let Some(Sender { parts, thread }) = self.sender.take() else {
            return Ok(Vec::new());
        };
        drop(parts);
        thread.join().map_err(|_| anyhow!("the upload's sender panicked"))?
    }

    /// Sends the last part and completes the upload: only now does the object exist under its
    /// name. Then checks the object's size is `expected`.
    pub fn finish(mut self, expected: u64) -> Result<()> {
        if !self.part.is_empty() || self.parts == 0 {
            self.send_part()?;
        }
        let etags = self.stop_sender()?;
        let remote = self.remote;
        let action = remote.bucket.complete_multipart_upload(
            Some(&remote.credentials),
            &self.key,
            &self.id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let answer =
            remote.text("complete the upload of", &self.key, remote.agent.post(url.as_str()).send(body.as_bytes()))?;
        // S3 may answer 200 with an error in the body.
        if answer.contains("<Error>") {
            return Err(refused("complete the upload of", &self.key, 200, answer));
        }
        self.done = true;
        remote.delete(&self.marker)?;
        let url = remote.bucket.head_object(Some(&remote.credentials), &self.key).sign(SIGNED_FOR);
        let head = remote.agent.head(url.as_str()).call().map_err(|e| transport("check", &self.key, e))?;
        let size =
            head.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if head.status().as_u16() != 200 || size != Some(expected) {
            bail!("the uploaded {} holds {size:?} bytes, not the {expected} sent", remote.shown_key(&self.key));
        }
        Ok(())
    }

    /// Aborts the upload: its parts are deleted, no object appears.
    fn abort(&mut self) -> Result<()> {
        // The part being sent first: a part that lands after the abort would stay, billed.
        let _ = self.stop_sender();
        let remote = self.remote;
        let url = remote.bucket.abort_multipart_upload(Some(&remote.credentials), &self.key, &self.id).sign(SIGNED_FOR);
        remote.text("abort the upload of", &self.key, remote.agent.delete(url.as_str()).call())?;
        remote.delete(&self.marker)
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let size = part_size(self.parts);
        let n = buf.len().min(size - self.part.len());
        self.part.extend_from_slice(&buf[..n]);
        if self.part.len() == size {
            self.send_part().map_err(|e| io::Error::other(format!("{e:#}")))?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.abort()
        {
            eprintln!(
                "the unfinished upload could not be aborted now ({e:#}); the next backup to this prefix aborts it"
            );
        }
    }
}

fn md5_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}
