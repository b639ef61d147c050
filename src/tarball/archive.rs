//! Reproducible tar archives, compressed with gzip on every core.
//!
//! [`ParGzWriter`] is pigz's scheme on flate2's zlib-rs backend: the input is cut into
//! fixed-size blocks at fixed offsets; each block is raw-deflated on its own thread, primed with
//! the previous block's last 32 KiB as a preset dictionary and ended with a sync flush (the last
//! one with a final block), and the pieces are concatenated behind one gzip header, with the
//! CRC-32 combined from the blocks' CRCs. The result is ONE ordinary gzip member that any
//! `gzip -d`, `tar xzf` or `flate2::read::GzDecoder` reads, and its bytes depend only on the
//! input and the block size, never on the number of threads or their timing.
//!
//! [`TarWriter`] writes entries with normalised metadata: owner and group 0/`root`, modes
//! 0755/0644, one mtime (`SOURCE_DATE_EPOCH`), GNU long names, no device numbers or atimes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Size of one independently compressed block (pigz uses 128 KiB; larger blocks cost less
/// coordination and the preset dictionary keeps the ratio).
pub(crate) const BLOCK_SIZE: usize = 512 * 1024;
/// The deflate window: how much of the previous block primes the next one.
const DICT_SIZE: usize = 32 * 1024;

struct Job {
    index: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    index: u64,
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// A `Write` that gzips what it is given on `threads` worker threads (see the module docs).
/// Call [`ParGzWriter::finish`] to write the trailer and get the inner writer back.
pub(crate) struct ParGzWriter<W: Write + Send + 'static> {
    block: Vec<u8>,
    dict: Vec<u8>,
    next_index: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, u64)>>>,
}

impl<W: Write + Send + 'static> ParGzWriter<W> {
    /// A compressor at `level` (0-9) writing to `inner` with `threads` workers (at least 1).
    pub(crate) fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        // RFC 1952 header: no name, mtime 0, XFL by level, OS 3 (Unix).
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        let (job_tx, job_rx) = sync_channel::<Job>(threads * 2);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<io::Result<Done>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                std::thread::spawn(move || worker(&rx, &tx, level))
            })
            .collect();
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(inner, &done_rx));
        Ok(ParGzWriter {
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            next_index: 0,
            jobs: Some(job_tx),
            workers,
            writer: Some(writer),
        })
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let next_dict = data[data.len().saturating_sub(DICT_SIZE)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let job = Job {
            index: self.next_index,
            dict,
            data,
            last,
        };
        self.next_index += 1;
        let sent = self.jobs.as_ref().map(|tx| tx.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.failure()),
        }
    }

    /// The error that stopped the pipeline (a worker or the writer failed).
    fn failure(&mut self) -> io::Error {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the gzip worker threads stopped"),
        }
    }

    /// Compresses what is buffered, writes the gzip trailer and returns the inner writer and
    /// the number of uncompressed bytes.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        self.send(true)?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("a gzip worker thread panicked"))?;
        }
        self.writer
            .take()
            .expect("finish is called once")
            .join()
            .map_err(|_| io::Error::other("the gzip writer thread panicked"))?
    }
}

impl<W: Write + Send + 'static> Write for ParGzWriter<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = BLOCK_SIZE - self.block.len();
            let take = room.min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            // A full block is sent only when more input follows, so the final block is
            // always the one `finish` sends.
            if self.block.len() == BLOCK_SIZE && !buf.is_empty() {
                self.send(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParGzWriter<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn worker(
    jobs: &Mutex<Receiver<Job>>,
    done: &std::sync::mpsc::Sender<io::Result<Done>>,
    level: u32,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let result = deflate_block(&job, level).map(|deflated| {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&job.data);
            Done {
                index: job.index,
                deflated,
                crc,
                len: job.data.len() as u64,
            }
        });
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

/// Raw deflate of one block, primed with `dict`, ending byte-aligned (sync flush) or with the
/// final block.
fn deflate_block(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new_with_window_bits(Compression::new(level), false, 15);
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == job.data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is consumed and output space remained.
            Status::Ok | Status::BufError if !job.last && all_in && room_left => return Ok(out),
            _ => {}
        }
    }
}

fn write_in_order<W: Write>(mut out: W, done: &Receiver<io::Result<Done>>) -> io::Result<(W, u64)> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut total = 0u64;
    for d in done.iter() {
        let d = d?;
        pending.insert(d.index, d);
        while let Some(d) = pending.remove(&next) {
            out.write_all(&d.deflated)?;
            total += d.len;
            crc.combine(&d.crc);
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a gzip block was lost"));
    }
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&(total as u32).to_le_bytes())?;
    out.flush()?;
    Ok((out, total))
}

/// Metadata every entry gets, whatever the files on disk say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normalised {
    /// The mtime of every entry (`SOURCE_DATE_EPOCH`).
    pub(crate) mtime: u64,
}

/// A tar stream with normalised metadata over any writer.
pub(crate) struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    meta: Normalised,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(inner: W, meta: Normalised) -> Self {
        TarWriter {
            tar: tar::Builder::new(inner),
            meta,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> io::Result<tar::Header> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.meta.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        Ok(h)
    }

    /// A directory (`path` without a trailing `/`).
    pub(crate) fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0)?;
        self.tar
            .append_data(&mut h, format!("{path}/"), io::empty())
    }

    /// A regular file, executable or not.
    pub(crate) fn file(&mut self, path: &str, executable: bool, data: &[u8]) -> io::Result<()> {
        let mode = if executable { 0o755 } else { 0o644 };
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64)?;
        self.tar.append_data(&mut h, path, data)
    }

    /// A symbolic link to `target` (kept as written).
    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0)?;
        self.tar.append_link(&mut h, path, target)
    }

    /// Writes the end-of-archive blocks and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 6, threads).unwrap();
        // Uneven writes cross block boundaries.
        for chunk in data.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        let (out, n) = w.finish().unwrap();
        assert_eq!(n, data.len() as u64);
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a pseudo-random walk.
        let mut x = 12345u32;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"aaabbc \n"[(x >> 16) as usize % 8]
            })
            .collect()
    }

    #[test]
    fn round_trips_through_single_member_decoder() {
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 17,
        ] {
            let data = sample(len);
            let z = gz(&data, 3);
            // GzDecoder reads exactly one member: the whole stream must be one.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_thread_count() {
        let data = sample(5 * BLOCK_SIZE + 999);
        let one = gz(&data, 1);
        assert_eq!(one, gz(&data, 2));
        assert_eq!(one, gz(&data, 7));
        assert!(one.len() < data.len() / 2, "sample should compress");
    }

    #[test]
    fn the_dictionary_keeps_the_ratio() {
        // A stream repeating with a period shorter than 32 KiB compresses across block
        // boundaries only if each block is primed with the previous one.
        let mut x = 12345u32;
        let words: Vec<String> = (0..500)
            .map(|i| format!("w{}x{} ", i * 7919 % 1000, i % 13))
            .collect();
        let unit: Vec<u8> = std::iter::repeat_with(|| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            words[(x >> 16) as usize % 500].clone().into_bytes()
        })
        .flatten()
        .take(20_000)
        .collect();
        let data: Vec<u8> = unit.iter().copied().cycle().take(4 * BLOCK_SIZE).collect();
        let z = gz(&data, 2);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        // Unprimed blocks would each pay for the first period again (about +30 % here).
        assert!(
            z.len() as f64 <= single.len() as f64 * 1.08,
            "{} bytes vs {} in one stream",
            z.len(),
            single.len()
        );
    }
}
