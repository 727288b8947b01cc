//! What to do with one request: answer it from the name book, forward it, or
//! drop it. Pure functions over bytes and messages; no I/O.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use super::NameBook;

/// TTL of the names we answer ourselves, as dockerd's.
pub(super) const TTL: u32 = 600;
/// Largest datagram we read from clients, and the EDNS size we advertise.
pub(super) const UDP_MAX: usize = 4096;
/// What a DNS-over-TCP length prefix can carry.
pub(super) const TCP_MAX: usize = u16::MAX as usize;

/// The fate of one request.
#[derive(Debug)]
pub(super) enum Decision {
    /// Send `reply`; over UDP at most `udp_limit` bytes (the client's size).
    Answer { reply: Message, udp_limit: usize },
    /// Not one of ours: ask the upstreams.
    Forward(Message),
    /// Not a query we can even answer with an error.
    Drop,
}

/// Decides on `packet` from sandbox `asker`. `turn` picks the round-robin
/// rotation of multi-address answers (the caller counts queries).
pub(super) fn decide(book: &dyn NameBook, asker: &str, packet: &[u8], turn: usize) -> Decision {
    let query = match Message::from_vec(packet) {
        Ok(query) => query,
        Err(_) => return malformed(packet),
    };
    // Never answer answers: that is how two servers loop on each other.
    if query.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    if query.metadata.op_code != OpCode::Query {
        return answer(failure(&query, ResponseCode::NotImp), &query);
    }
    let [question] = query.queries.as_slice() else {
        return answer(failure(&query, ResponseCode::FormErr), &query);
    };
    if question.query_class != DNSClass::IN {
        return Decision::Forward(query);
    }
    let name = book_name(&question.name);
    let records = match question.query_type {
        RecordType::A => book
            .lookup_v4(asker, &name)
            .map(|addrs| a_records(&question.name, addrs, turn)),
        RecordType::PTR => ptr_address(&question.name)
            .and_then(|ip| book.lookup_ptr(asker, ip))
            .map(|host| ptr_record(&question.name, &host).into_iter().collect()),
        // A name of ours has only A records: every other type is an empty
        // NOERROR (for AAAA that is what dockerd answers on IPv4 networks).
        _ => book.lookup_v4(asker, &name).map(|_| Vec::new()),
    };
    match records {
        Some(records) => {
            let mut reply = reply_to(&query);
            reply.answers = records;
            answer(reply, &query)
        }
        None => Decision::Forward(query),
    }
}

/// An error answer to `query`, echoing its question.
pub(super) fn failure(query: &Message, code: ResponseCode) -> Message {
    let mut reply = reply_to(query);
    reply.metadata.response_code = code;
    reply
}

/// The bytes to send for `reply` within `limit`: the whole message when it
/// fits, else the header and question with TC set so the client retries over
/// TCP; None when the message cannot be encoded at all.
pub(super) fn encode(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = match reply.to_vec() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(error = %e, "cannot encode reply; sending SERVFAIL");
            let mut fallback = Message::error_msg(
                reply.metadata.id,
                reply.metadata.op_code,
                ResponseCode::ServFail,
            );
            fallback.metadata.recursion_desired = reply.metadata.recursion_desired;
            fallback.metadata.recursion_available = true;
            return fallback.to_vec().ok();
        }
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.truncate().to_vec().ok()
}

/// The most a UDP answer to `query` may carry: 512 bytes, or its EDNS size.
pub(super) fn udp_limit(query: &Message) -> usize {
    usize::from(query.max_payload())
}

fn answer(reply: Message, query: &Message) -> Decision {
    Decision::Answer {
        reply,
        udp_limit: udp_limit(query),
    }
}

/// A message whose body does not parse gets FORMERR if its header is a
/// query's; anything less is dropped (there is no id to answer to).
fn malformed(packet: &[u8]) -> Decision {
    match Header::from_bytes(packet) {
        Ok(header) if header.metadata.message_type == MessageType::Query => {
            let mut metadata = Metadata::response_from_request(&header.metadata);
            metadata.recursion_available = true;
            metadata.response_code = ResponseCode::FormErr;
            let mut reply = Message::response(header.metadata.id, header.metadata.op_code);
            reply.metadata = metadata;
            Decision::Answer {
                reply,
                udp_limit: 512,
            }
        }
        _ => Decision::Drop,
    }
}

/// A response skeleton: id, opcode, RD and CD copied, RA set, question echoed.
fn reply_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&query.metadata);
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    // RFC 6891: an EDNS query gets an OPT record back.
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_MAX as u16);
        reply.set_edns(edns);
    }
    reply
}

/// The key the book knows names by: lowercase, no trailing dot.
fn book_name(name: &Name) -> String {
    let mut ascii = name.to_lowercase().to_ascii();
    if ascii.ends_with('.') {
        ascii.pop();
    }
    ascii
}

/// All of the name's addresses, rotated so successive queries lead with a
/// different one (dockerd's round robin).
fn a_records(owner: &Name, mut addrs: Vec<Ipv4Addr>, turn: usize) -> Vec<Record> {
    if !addrs.is_empty() {
        let shift = turn % addrs.len();
        addrs.rotate_left(shift);
    }
    addrs
        .into_iter()
        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))))
        .collect()
}

/// The address a full `d.c.b.a.in-addr.arpa.` name stands for.
fn ptr_address(name: &Name) -> Option<Ipv4Addr> {
    let net = name.parse_arpa_name().ok()?;
    match net.addr() {
        IpAddr::V4(ip) if net.prefix_len() == 32 => Some(ip),
        _ => None,
    }
}

fn ptr_record(owner: &Name, host: &str) -> Option<Record> {
    match Name::from_ascii(format!("{}.", host.trim_end_matches('.'))) {
        Ok(target) => Some(Record::from_rdata(
            owner.clone(),
            TTL,
            RData::PTR(PTR(target)),
        )),
        Err(e) => {
            // The book's fault, not the client's: answer "no such record".
            tracing::debug!(host, error = %e, "name book gave an invalid PTR name");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hickory_proto::op::Query;
    use proptest::prelude::*;

    use super::*;

    struct Book {
        names: HashMap<&'static str, Vec<Ipv4Addr>>,
        ptrs: HashMap<Ipv4Addr, &'static str>,
    }

    impl NameBook for Book {
        fn lookup_v4(&self, asker: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            // Only sandbox "sb1" is on the network in this book.
            (asker == "sb1").then(|| self.names.get(name).cloned())?
        }
        fn lookup_ptr(&self, asker: &str, ip: Ipv4Addr) -> Option<String> {
            (asker == "sb1").then(|| self.ptrs.get(&ip).map(|s| s.to_string()))?
        }
    }

    fn book() -> Book {
        let web = Ipv4Addr::new(172, 20, 0, 2);
        let db = Ipv4Addr::new(172, 20, 0, 3);
        Book {
            names: HashMap::from([
                ("web", vec![web]),
                ("web.mynet", vec![web]),
                ("shared", vec![web, db]),
            ]),
            ptrs: HashMap::from([(web, "web.mynet"), (db, "bad name..")]),
        }
    }

    /// A standard query: `name` of `qtype`, RD set, given id.
    fn query_for(id: u16, name: &str, qtype: RecordType) -> Message {
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        query
    }

    fn decide_msg(query: &Message, turn: usize) -> Decision {
        decide(&book(), "sb1", &query.to_vec().unwrap(), turn)
    }

    fn answered(decision: Decision) -> Message {
        match decision {
            Decision::Answer { reply, .. } => reply,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn a_addrs(reply: &Message) -> Vec<Ipv4Addr> {
        reply
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn known_name_gets_its_address_with_dockerd_header_and_ttl() {
        let reply = answered(decide_msg(&query_for(0x1234, "WEB.", RecordType::A), 0));
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert!(reply.metadata.recursion_desired);
        assert!(reply.metadata.recursion_available);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.queries, query_for(0, "WEB.", RecordType::A).queries);
        assert_eq!(a_addrs(&reply), vec![Ipv4Addr::new(172, 20, 0, 2)]);
        assert_eq!(reply.answers[0].ttl, TTL);
        // The owner keeps the client's spelling (0x20-randomising clients check it).
        assert_eq!(reply.answers[0].name.to_ascii(), "WEB.");
    }

    #[test]
    fn rd_clear_is_copied() {
        let mut query = query_for(7, "web.mynet.", RecordType::A);
        query.metadata.recursion_desired = false;
        let reply = answered(decide_msg(&query, 0));
        assert!(!reply.metadata.recursion_desired);
    }

    #[test]
    fn shared_alias_gets_all_addresses_rotated() {
        let first = a_addrs(&answered(decide_msg(
            &query_for(1, "shared.", RecordType::A),
            0,
        )));
        let second = a_addrs(&answered(decide_msg(
            &query_for(2, "shared.", RecordType::A),
            1,
        )));
        assert_eq!(first.len(), 2);
        assert_eq!(second, vec![first[1], first[0]]);
    }

    #[test]
    fn aaaa_and_other_types_of_known_name_are_empty_noerror() {
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let reply = answered(decide_msg(&query_for(3, "web.", qtype), 0));
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.answers.is_empty(), "{qtype}");
        }
    }

    #[test]
    fn ptr_of_known_address() {
        let reply = answered(decide_msg(
            &query_for(4, "2.0.20.172.in-addr.arpa.", RecordType::PTR),
            0,
        ));
        match &reply.answers[..] {
            [record] => {
                assert_eq!(
                    record.data,
                    RData::PTR(PTR(Name::from_ascii("web.mynet.").unwrap()))
                );
                assert_eq!(record.ttl, TTL);
            }
            other => panic!("expected one PTR, got {other:?}"),
        }
    }

    #[test]
    fn unknown_names_and_partial_arpa_names_are_forwarded() {
        for (name, qtype) in [
            ("example.com.", RecordType::A),
            ("example.com.", RecordType::AAAA),
            ("9.9.9.9.in-addr.arpa.", RecordType::PTR),
            ("20.172.in-addr.arpa.", RecordType::PTR),
        ] {
            let query = query_for(5, name, qtype);
            match decide_msg(&query, 0) {
                Decision::Forward(forwarded) => assert_eq!(forwarded, query),
                other => panic!("{name} {qtype}: expected forward, got {other:?}"),
            }
        }
    }

    #[test]
    fn other_sandboxes_do_not_see_the_names() {
        let query = query_for(6, "web.", RecordType::A);
        let decision = decide(&book(), "sb2", &query.to_vec().unwrap(), 0);
        assert!(matches!(decision, Decision::Forward(_)));
    }

    #[test]
    fn bad_ptr_name_from_the_book_is_an_empty_answer() {
        let reply = answered(decide_msg(
            &query_for(8, "3.0.20.172.in-addr.arpa.", RecordType::PTR),
            0,
        ));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn responses_and_short_packets_are_dropped() {
        let mut response = query_for(9, "web.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert!(matches!(decide_msg(&response, 0), Decision::Drop));
        assert!(matches!(
            decide(&book(), "sb1", &[0x12, 0x34, 0x01], 0),
            Decision::Drop
        ));
        assert!(matches!(decide(&book(), "sb1", &[], 0), Decision::Drop));
    }

    #[test]
    fn header_with_broken_body_gets_formerr() {
        let mut packet = query_for(0xbeef, "web.", RecordType::A).to_vec().unwrap();
        packet.truncate(packet.len() - 3);
        let reply = answered(decide(&book(), "sb1", &packet, 0));
        assert_eq!(reply.metadata.id, 0xbeef);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn two_questions_get_formerr_and_other_opcodes_notimp() {
        let mut query = query_for(10, "web.", RecordType::A);
        query.add_query(Query::query(
            Name::from_ascii("db.").unwrap(),
            RecordType::A,
        ));
        let reply = answered(decide_msg(&query, 0));
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

        let mut update = query_for(11, "web.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        let reply = answered(decide_msg(&update, 0));
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn edns_query_gets_opt_back_and_its_size_as_limit() {
        let mut query = query_for(12, "web.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        query.set_edns(edns);
        match decide_msg(&query, 0) {
            Decision::Answer { reply, udp_limit } => {
                assert!(reply.edns.is_some());
                assert_eq!(udp_limit, 1232);
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn oversized_reply_is_truncated_to_the_limit() {
        let query = query_for(13, "many.", RecordType::A);
        let mut reply = reply_to(&query);
        reply.answers = a_records(
            &query.queries[0].name,
            (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect(),
            0,
        );
        let full = encode(&reply, TCP_MAX).unwrap();
        assert!(full.len() > 512);
        let cut = Message::from_vec(&encode(&reply, 512).unwrap()).unwrap();
        assert!(cut.metadata.truncation);
        assert!(cut.answers.is_empty());
        assert_eq!(cut.metadata.id, 13);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..600), turn in any::<usize>()) {
            if let Decision::Answer { reply, udp_limit } = decide(&book(), "sb1", &packet, turn) {
                let bytes = encode(&reply, udp_limit);
                prop_assert!(bytes.is_some());
            }
        }

        /// Valid queries with a few bytes overwritten reach deep into the parser.
        #[test]
        fn damaged_queries_never_panic(
            name in prop_oneof![Just("web."), Just("shared."), Just("2.0.20.172.in-addr.arpa.")],
            qtype in prop_oneof![Just(RecordType::A), Just(RecordType::AAAA), Just(RecordType::PTR)],
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut query = query_for(1, name, qtype);
            query.set_edns(Edns::new());
            let mut packet = query.to_vec().unwrap();
            for (at, byte) in damage {
                let i = at.index(packet.len());
                packet[i] = byte;
            }
            if let Decision::Answer { reply, udp_limit } = decide(&book(), "sb1", &packet, 0) {
                prop_assert!(encode(&reply, udp_limit).is_some());
            }
        }

        #[test]
        fn every_answer_keeps_the_query_id(id in any::<u16>(), label in prop_oneof![Just("web".to_string()), Just("ShArEd".to_string()), "[a-zA-Z0-9]{1,20}"], qtype in any::<u16>(), rd in any::<bool>()) {
            let mut query = query_for(id, &format!("{label}."), RecordType::from(qtype));
            query.metadata.recursion_desired = rd;
            let packet = query.to_vec().unwrap();
            if let Decision::Answer { reply, udp_limit } = decide(&book(), "sb1", &packet, 0) {
                let bytes = encode(&reply, udp_limit).unwrap();
                let decoded = Message::from_vec(&bytes).unwrap();
                prop_assert_eq!(decoded.metadata.id, id);
                prop_assert_eq!(decoded.metadata.recursion_desired, rd);
                prop_assert!(decoded.metadata.recursion_available);
            }
        }
    }
}
