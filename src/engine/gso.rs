//! Splitting a run of packets into UDP GSO sends.
//!
//! With `UDP_SEGMENT` one `sendmsg` carries a buffer the kernel cuts into datagrams of `segment`
//! bytes; only the last may be shorter. A DP list is mostly full packets of one size and a shorter
//! last one, so it usually goes out in one or two calls instead of one per packet.

use std::ops::Range;

/// Most segments the kernel takes in one GSO send (`UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: one IPv4 UDP datagram's worth (65535 − 20 − 8).
pub const MAX_GSO_BYTES: usize = 65_507;

/// One send: `bytes` of the packet buffer, cut into `segment`-byte datagrams (`count` of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub bytes: Range<usize>,
    pub segment: usize,
    pub count: usize,
}

/// The sends for packets `packets` (indices into `ends`, the end offsets of contiguous packets).
/// With `gso` off every packet is its own batch.
pub fn batches(ends: &[usize], packets: Range<usize>, gso: bool) -> Vec<Batch> {
    let mut out = Vec::new();
    let end = packets.end.min(ends.len());
    let mut i = packets.start;
    while i < end {
        let start = if i == 0 { 0 } else { ends[i - 1] };
        let segment = ends[i] - start;
        let mut count = 1;
        let mut stop = ends[i];
        if gso {
            while i + count < end && count < MAX_GSO_SEGMENTS {
                let next = ends[i + count] - ends[i + count - 1];
                if next > segment || ends[i + count] - start > MAX_GSO_BYTES {
                    break;
                }
                count += 1;
                stop = ends[i + count - 1];
                if next < segment {
                    // A shorter datagram ends a GSO send.
                    break;
                }
            }
        }
        out.push(Batch {
            bytes: start..stop,
            segment,
            count,
        });
        i += count;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(sizes: &[usize]) -> Vec<usize> {
        sizes
            .iter()
            .scan(0, |acc, s| {
                *acc += s;
                Some(*acc)
            })
            .collect()
    }

    #[test]
    fn a_dp_list_is_one_send_full_packets_then_the_short_last() {
        // 5,000 IPv4 servers from dpmaster's writer: 25 packets of 1394 bytes, a last of 894.
        let mut sizes = vec![1394; 25];
        sizes.push(894);
        let e = ends(&sizes);
        let b = batches(&e, 0..26, true);
        assert_eq!(
            b,
            vec![Batch {
                bytes: 0..25 * 1394 + 894,
                segment: 1394,
                count: 26
            }]
        );
    }

    #[test]
    fn batches_respect_the_segment_and_byte_caps_and_size_changes() {
        let e = ends(&[1400; 100]);
        let b = batches(&e, 0..100, true);
        // 65507 / 1400 = 46 segments per send.
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [46, 46, 8]);
        assert!(b.iter().all(|b| b.bytes.len() <= MAX_GSO_BYTES));
        let e = ends(&[10; 200]);
        let b = batches(&e, 0..200, true);
        assert_eq!(
            b.iter().map(|b| b.count).collect::<Vec<_>>(),
            [64, 64, 64, 8]
        );
        // A longer packet after shorter ones starts a new send; a shorter one ends the current.
        let e = ends(&[100, 100, 50, 100, 200, 200]);
        let b = batches(&e, 0..6, true);
        let shape: Vec<_> = b.iter().map(|b| (b.segment, b.count)).collect();
        assert_eq!(shape, [(100, 3), (100, 1), (200, 2)]);
        // Byte ranges tile the buffer with no gap.
        let mut at = 0;
        for x in &b {
            assert_eq!(x.bytes.start, at);
            at = x.bytes.end;
        }
        assert_eq!(at, *e.last().unwrap());
    }

    #[test]
    fn without_gso_each_packet_is_alone_and_ranges_start_midway() {
        let e = ends(&[5, 6, 7]);
        let b = batches(&e, 1..3, false);
        assert_eq!(
            b,
            vec![
                Batch {
                    bytes: 5..11,
                    segment: 6,
                    count: 1
                },
                Batch {
                    bytes: 11..18,
                    segment: 7,
                    count: 1
                }
            ]
        );
        assert!(batches(&e, 3..3, true).is_empty());
        assert!(
            batches(&e, 2..9, true).len() == 1,
            "a range past the end is clipped"
        );
    }
}
