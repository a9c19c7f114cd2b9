//! HTTPS delivery: a TLS receiver on loopback with a self-signed certificate (made by
//! rcgen, served by rustls), trusted through `tls_root_certificates_pem`, gets signed
//! events over one kept-alive TLS connection; an emitter that does not trust the
//! certificate fails the attempt (it never sends the event in clear or unverified).
#![cfg(feature = "https")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use volley::webhook::{
    verify, DeadReason, Emitter, Endpoint, MemoryDeadLetters, RetrySchedule, Secret,
};

struct TlsReceiver {
    port: u16,
    cert_pem: String,
    connections: Arc<AtomicU64>,
    /// (webhook-id, webhook-timestamp, webhook-signature, body) of each request.
    requests: Arc<Mutex<Vec<[String; 4]>>>,
}

fn start_tls_receiver() -> TlsReceiver {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    {
        let (connections, requests) = (connections.clone(), requests.clone());
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                connections.fetch_add(1, Ordering::Relaxed);
                let (config, requests) = (config.clone(), requests.clone());
                thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                    while let Some(request) = read_request(&mut reader) {
                        requests.lock().unwrap().push(request);
                        let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                        if reader.get_mut().write_all(answer).is_err()
                            || reader.get_mut().flush().is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
    }
    TlsReceiver {
        port,
        cert_pem,
        connections,
        requests,
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<[String; 4]> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let (mut id, mut ts, mut sig, mut length) = (String::new(), String::new(), String::new(), 0);
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':')?;
        let value = value.trim().to_owned();
        match name.to_ascii_lowercase().as_str() {
            "webhook-id" => id = value,
            "webhook-timestamp" => ts = value,
            "webhook-signature" => sig = value,
            "content-length" => length = value.parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some([id, ts, sig, String::from_utf8(body).ok()?])
}

#[test]
fn https_deliveries_are_signed_and_kept_alive_and_untrusted_certificates_fail() {
    let receiver = start_tls_receiver();
    let url = format!("https://127.0.0.1:{}/hook", receiver.port);
    let secret = Secret::generate();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(&url, secret.clone()))
        .tls_root_certificates_pem(receiver.cert_pem.clone())
        .build()
        .unwrap();
    let ids: Vec<String> = (0..10)
        .map(|n| emitter.emit("tls.test", &n).unwrap().to_string())
        .collect();
    assert!(
        emitter.flush(Duration::from_secs(20)),
        "{:?}",
        emitter.stats()
    );
    assert_eq!(emitter.stats().endpoints[0].delivered, 10);
    let requests = receiver.requests.lock().unwrap().clone();
    assert_eq!(
        requests.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        ids
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for [id, ts, sig, body] in &requests {
        verify(
            std::slice::from_ref(&secret),
            id,
            ts,
            sig,
            body.as_bytes(),
            now,
        )
        .unwrap();
    }
    assert_eq!(
        receiver.connections.load(Ordering::Relaxed),
        1,
        "one TLS connection, kept alive"
    );
    emitter.shutdown(Duration::from_secs(1));

    // Without the receiver's certificate among its roots, nothing is delivered.
    let dead = MemoryDeadLetters::new();
    let untrusting = Emitter::builder()
        .endpoint(Endpoint::new(&url, secret))
        .retry_schedule(RetrySchedule::parse("0s").unwrap())
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    untrusting.emit("tls.test", &0).unwrap();
    assert!(untrusting.flush(Duration::from_secs(20)));
    let letters = dead.take();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, DeadReason::Exhausted);
    assert_eq!(
        receiver.requests.lock().unwrap().len(),
        10,
        "no request got through"
    );

    assert!(Emitter::builder()
        .endpoint(Endpoint::new(&url, Secret::generate()))
        .tls_root_certificates_pem("not a certificate")
        .build()
        .is_err());
}
