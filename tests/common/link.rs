//! A TCP link to a server that a test can cut the way a network partition
//! does: connections stay open, but no byte gets through either way and a
//! new connection gets no answer. Stopping the server instead (as
//! `PrivatePostgres::stop_server` does) refuses connections at once, which
//! a client notices in microseconds; a partition is only noticed by a
//! timeout, and that is what this shows.
//!
//! Plain threads and blocking sockets: the link must keep working whatever
//! the test's runtime is doing. While cut, each pump holds what it read
//! (as the network's buffers and TCP's retransmissions would) and delivers
//! it when the link is restored.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

/// Open or cut; waiters are woken when it is restored.
#[derive(Default)]
struct Gate {
    cut: Mutex<bool>,
    restored: Condvar,
}

impl Gate {
    fn wait_open(&self) {
        let Ok(mut cut) = self.cut.lock() else {
            return;
        };
        while *cut {
            match self.restored.wait(cut) {
                Ok(guard) => cut = guard,
                Err(_) => return,
            }
        }
    }

    fn set(&self, value: bool) {
        if let Ok(mut cut) = self.cut.lock() {
            *cut = value;
        }
        self.restored.notify_all();
    }
}

pub struct Link {
    pub port: u16,
    gate: Arc<Gate>,
}

impl Link {
    /// Listens on a free loopback port and forwards each connection to
    /// `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> anyhow::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let gate = Arc::new(Gate::default());
        let accept_gate = gate.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // A connection made while cut is accepted (the kernel does
                // that) and gets nothing until the link is restored.
                accept_gate.wait_open();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let gate = accept_gate.clone();
                    std::thread::spawn(move || pump(from, to, &gate));
                }
            }
        });
        Ok(Link { port, gate })
    }

    /// No byte gets through, and new connections get no answer.
    pub fn cut(&self) {
        self.gate.set(true);
    }

    /// Bytes held while cut are delivered, and new connections go through.
    pub fn restore(&self) {
        self.gate.set(false);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Held pumps finish; the listener thread ends with the process.
        self.restore();
    }
}

/// Copies `from` to `to` while the gate is open; ends both directions when
/// `from` ends.
fn pump(mut from: TcpStream, mut to: TcpStream, gate: &Gate) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        gate.wait_open();
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
