//! cargo run --release --example pushpull_backpressure
//!
//! A fast pusher and a slow worker over loopback TCP, both under
//! `OverflowPolicy::Block { timeout: None }`: the worker's full queue pauses its reading,
//! TCP's flow control fills up, and the pusher waits. Every job arrives once, in order,
//! and nothing is dropped anywhere; both ends count the waiting. (With the default
//! DropNewest at the worker, its full queue would drop instead, and count it.) Any
//! ZeroMQ PUSH or PULL could take either side's place: the wire is ZMTP 3.1.

use std::time::{Duration, Instant};

use bytes::Bytes;
use volley::io::Context;
use volley::ring::OverflowPolicy;
use volley::socket::{Message, Puller, Pusher, SocketOptions};

const JOBS: usize = 5_000;
const JOB_BYTES: usize = 16 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let context = Context::new()?;
    let block = SocketOptions {
        queue_capacity: 16,
        policy: OverflowPolicy::Block { timeout: None },
        ..SocketOptions::default()
    };
    let mut worker = Puller::with_options(&context, block.clone())?;
    let endpoint = worker.bind("tcp://127.0.0.1:0")?.to_string();
    let mut pusher = Pusher::with_options(&context, block)?;
    pusher.connect(&endpoint)?;
    if !pusher.wait_for_peers(1, Duration::from_secs(5)) {
        return Err("the worker did not connect".into());
    }

    // 80 MB of jobs, far more than the socket buffers hold: the pusher has to wait.
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> Result<Pusher, volley::socket::Error> {
        let payload = Bytes::from(vec![0u8; JOB_BYTES]);
        for n in 0..JOBS {
            pusher.send(Message::new(vec![
                Bytes::from(n.to_string()),
                payload.clone(),
            ]))?;
        }
        Ok(pusher)
    });

    // The worker is slow at first: a millisecond per job for the first 200.
    for n in 0..JOBS {
        let job = worker
            .recv_timeout(Duration::from_secs(10))?
            .ok_or("no job within 10 s")?;
        let number: usize = std::str::from_utf8(&job.frames()[0])?.parse()?;
        if number != n {
            return Err(format!("job {number} arrived where {n} was due").into());
        }
        if n < 200 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut pusher = sender.join().map_err(|_| "the sending thread panicked")??;
    let (sent, taken) = (pusher.stats(), worker.stats());
    println!(
        "{JOBS} jobs of {JOB_BYTES} B in {:.2} s, all in order",
        started.elapsed().as_secs_f64()
    );
    println!(
        "pusher: dropped {}, waited {} times for {:.1} ms",
        sent.dropped,
        sent.blocked,
        sent.blocked_time.as_secs_f64() * 1e3
    );
    println!(
        "worker: dropped {}, paused its reading {} times for {:.1} ms",
        taken.dropped,
        taken.blocked,
        taken.blocked_time.as_secs_f64() * 1e3
    );
    if sent.dropped + taken.dropped != 0 {
        return Err("a job was dropped".into());
    }
    Ok(())
}
