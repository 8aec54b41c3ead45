package als

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The wire decoder reads a StreamAccessLogsMessage's encoding and keeps only
// what attribution needs: decoding whole entries (addresses, timings, maps of
// headers) costs several times more than attributing and recording them.
//
// For every message that proto.Unmarshal accepts it yields the facts that
// the getters in als.go read from the decoded message, with protobuf's rules:
// of a singular field sent more than once the last scalar wins and messages
// merge, a field with an unexpected wire type is an unknown field, and a
// later member of the log_entries oneof replaces an earlier one. It checks the structure
// of every field it reads and skips the rest by length, so it accepts some
// messages that proto.Unmarshal refuses, such as a header value that is not
// UTF-8 (which would otherwise cost the whole batch).

// Field numbers of envoy.service.accesslog.v3 and envoy.data.accesslog.v3.
const (
	fMsgIdentifier = 1
	fMsgHTTPLogs   = 2
	fMsgTCPLogs    = 3

	fEntriesEntry = 1

	fHTTPCommon   = 1
	fHTTPRequest  = 3
	fHTTPResponse = 4

	fTCPCommon     = 1
	fTCPConnection = 2

	fCommonStartTime  = 5
	fCommonTTLB       = 12 // time_to_last_downstream_tx_byte
	fCommonCluster    = 15
	fCommonFlags      = 16
	fCommonDuration   = 23
	fFlagsNoHealthy   = 2
	fFlagsRemoteReset = 5
	fFlagsConnFailure = 6
	fFlagsConnTerm    = 7
	fFlagsOverflow    = 8
	fFlagsDownTerm    = 15 // downstream_connection_termination (DC)
	fFlagsDownReset   = 28 // downstream_remote_reset (DR)

	fReqAuthority = 3
	fReqBodyBytes = 12
	fReqHeaders   = 13

	fRespCode      = 1
	fRespBodyBytes = 3
	fRespHeaders   = 4
	fRespTrailers  = 5

	fConnReceived = 1
	fConnSent     = 2
)

var errMalformed = errors.New("not a valid protobuf encoding")

// scanner walks the fields of one encoded message. Tags, lengths and
// varints of one byte (nearly all in an access log) take a short path; the
// rest go through protowire, which decides what is malformed exactly as
// proto.Unmarshal does.
type scanner struct {
	b   []byte
	num protowire.Number
	typ protowire.Type
	v   uint64 // the value of a varint
	val []byte // the value of a length-delimited field
	bad bool   // the encoding is malformed
}

// next moves to the next field; false at the end or when malformed.
func (s *scanner) next() bool {
	b := s.b
	var tag uint64
	var i int
	switch {
	case len(b) == 0:
		return false
	case b[0] < 0x80:
		tag, i = uint64(b[0]), 1
	case len(b) > 1 && b[1] < 0x80:
		tag, i = uint64(b[0]&0x7f)|uint64(b[1])<<7, 2
	default:
		return s.slow()
	}
	if tag < 8 { // field number 0
		s.bad = true
		return false
	}
	s.num, s.typ = protowire.Number(tag>>3), protowire.Type(tag&7)
	if s.typ != protowire.VarintType && s.typ != protowire.BytesType {
		return s.slow()
	}
	// The varint or length; one byte is the common case, worth no call.
	var v uint64
	n := 1
	if i < len(b) && b[i] < 0x80 {
		v = uint64(b[i])
	} else if v, n = protowire.ConsumeVarint(b[i:]); n < 0 {
		s.bad = true
		return false
	}
	i += n
	if s.typ == protowire.VarintType {
		s.v, s.b = v, b[i:]
		return true
	}
	if v > uint64(len(b)-i) {
		s.bad = true
		return false
	}
	end := i + int(v)
	s.val, s.b = b[i:end:end], b[end:]
	return true
}

func (s *scanner) slow() bool {
	if len(s.b) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(s.b)
	if n < 0 {
		s.bad = true
		return false
	}
	s.num, s.typ = num, typ
	b := s.b[n:]
	switch typ {
	case protowire.VarintType:
		v, m := protowire.ConsumeVarint(b)
		if m < 0 {
			s.bad = true
			return false
		}
		s.v, s.b = v, b[m:]
	case protowire.BytesType:
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			s.bad = true
			return false
		}
		s.val, s.b = v[:len(v):len(v)], b[m:]
	default:
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			s.bad = true
			return false
		}
		s.b = b[m:]
	}
	return true
}

// end is errMalformed if the scan stopped on a malformed field.
func (s *scanner) end() error {
	if s.bad {
		return errMalformed
	}
	return nil
}

// logKind is the member of the log_entries oneof a message carries.
type logKind uint8

const (
	noLogs logKind = iota
	httpLogs
	tcpLogs
)

// wireMessage is a message split into its top-level parts. Its slices
// alias the encoding.
type wireMessage struct {
	// identifier holds the encodings of the identifier field; more than one
	// merge, as protobuf merges a repeated message field.
	identifier [][]byte
	kind       logKind
	// lists are the encodings of the oneof member that stands, in order.
	lists [][]byte
}

// split reads a message's top level.
func (m *wireMessage) split(b []byte) error {
	m.identifier, m.kind, m.lists = m.identifier[:0], noLogs, m.lists[:0]
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.BytesType {
			continue
		}
		switch s.num {
		case fMsgIdentifier:
			m.identifier = append(m.identifier, s.val)
		case fMsgHTTPLogs, fMsgTCPLogs:
			kind := httpLogs
			if s.num == fMsgTCPLogs {
				kind = tcpLogs
			}
			if m.kind != kind {
				m.kind, m.lists = kind, m.lists[:0]
			}
			m.lists = append(m.lists, s.val)
		}
	}
	return s.end()
}

// forget drops the references into a message that is done with: its
// buffer goes back to gRPC's pool.
func (m *wireMessage) forget() {
	clear(m.identifier)
	clear(m.lists)
}

// errTooMany: a message over MaxEntriesPerMessage.
var errTooMany = fmt.Errorf("more than %d entries", MaxEntriesPerMessage)

// decoder turns entries' encodings into facts. It interns cluster names so
// that an entry costs no allocation; one decoder serves one stream.
type decoder struct {
	clusters map[string]string
}

// maxInterned bounds a stream's cluster names; past it the cache starts
// over (a sidecar has one name per upstream and subset).
const maxInterned = 4096

func (d *decoder) intern(b []byte) (string, error) {
	if s, ok := d.clusters[string(b)]; ok {
		return s, nil
	}
	if !utf8.Valid(b) {
		// A name in the graph must be text; protobuf refuses such a string
		// field too.
		return "", fmt.Errorf("upstream_cluster %q is not UTF-8", b)
	}
	if d.clusters == nil {
		d.clusters = make(map[string]string)
	} else if len(d.clusters) >= maxInterned {
		clear(d.clusters)
	}
	s := string(b)
	d.clusters[s] = s
	return s, nil
}

// entries appends the facts of every entry in m's lists to out, up to
// MaxEntriesPerMessage.
func (d *decoder) entries(m *wireMessage, out []facts) ([]facts, error) {
	for _, list := range m.lists {
		s := scanner{b: list}
		for s.next() {
			if s.num != fEntriesEntry || s.typ != protowire.BytesType {
				continue
			}
			if len(out) == MaxEntriesPerMessage {
				return out, errTooMany
			}
			out = append(out, facts{grpcTrailer: -1, grpcHeader: -1})
			e := &out[len(out)-1]
			var err error
			if m.kind == tcpLogs {
				err = d.tcpEntry(s.val, e)
			} else {
				err = d.httpEntry(s.val, e)
			}
			if err != nil {
				return out, err
			}
		}
		if err := s.end(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// grpcStatuses are the last grpc-status of the response's headers and
// trailers, as a decoded map keeps them.
type grpcStatuses struct {
	trailer, header         []byte
	haveTrailer, haveHeader bool
}

func (d *decoder) httpEntry(b []byte, e *facts) error {
	var g grpcStatuses
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.BytesType {
			continue
		}
		var err error
		switch s.num {
		case fHTTPCommon:
			err = d.common(s.val, e)
		case fHTTPRequest:
			err = request(s.val, e)
		case fHTTPResponse:
			err = response(s.val, e, &g)
		}
		if err != nil {
			return err
		}
	}
	if g.haveTrailer {
		e.grpcTrailer = parseGRPCStatus(g.trailer)
	}
	if g.haveHeader {
		e.grpcHeader = parseGRPCStatus(g.header)
	}
	return s.end()
}

func (d *decoder) tcpEntry(b []byte, e *facts) error {
	e.tcp = true
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.BytesType {
			continue
		}
		var err error
		switch s.num {
		case fTCPCommon:
			err = d.common(s.val, e)
		case fTCPConnection:
			err = connection(s.val, e)
		}
		if err != nil {
			return err
		}
	}
	return s.end()
}

func (d *decoder) common(b []byte, e *facts) error {
	e.common = true
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.BytesType {
			continue
		}
		var err error
		switch s.num {
		case fCommonStartTime:
			e.startSet = true
			err = secondsNanos(s.val, &e.startSec, &e.startNanos)
		case fCommonTTLB:
			err = secondsNanos(s.val, &e.ttlbSec, &e.ttlbNanos)
		case fCommonDuration:
			e.durSet = true
			err = secondsNanos(s.val, &e.durSec, &e.durNanos)
		case fCommonCluster:
			e.cluster, err = d.intern(s.val)
		case fCommonFlags:
			err = flags(s.val, e)
		}
		if err != nil {
			return err
		}
	}
	return s.end()
}

// secondsNanos reads a Timestamp or a Duration (the same two fields).
func secondsNanos(b []byte, sec *int64, nanos *int32) error {
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.VarintType {
			continue
		}
		switch s.num {
		case 1:
			*sec = int64(s.v)
		case 2:
			*nanos = int32(s.v)
		}
	}
	return s.end()
}

func flags(b []byte, e *facts) error {
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.VarintType {
			continue
		}
		switch s.num {
		case fFlagsNoHealthy:
			e.noHealthy = s.v != 0
		case fFlagsRemoteReset:
			e.remReset = s.v != 0
		case fFlagsConnFailure:
			e.connFail = s.v != 0
		case fFlagsConnTerm:
			e.connTerm = s.v != 0
		case fFlagsOverflow:
			e.overflow = s.v != 0
		case fFlagsDownTerm:
			e.downTerm = s.v != 0
		case fFlagsDownReset:
			e.downReset = s.v != 0
		}
	}
	return s.end()
}

func request(b []byte, e *facts) error {
	s := scanner{b: b}
	for s.next() {
		switch {
		case s.num == fReqBodyBytes && s.typ == protowire.VarintType:
			e.bytesIn = s.v
		case s.num == fReqAuthority && s.typ == protowire.BytesType:
			e.shadow = isShadow(s.val)
		case s.num == fReqHeaders && s.typ == protowire.BytesType:
			k, _, err := mapEntry(s.val)
			if err != nil {
				return err
			}
			if string(k) == DownstreamClusterHeader {
				e.fromPeer = true
			}
		}
	}
	return s.end()
}

func response(b []byte, e *facts, g *grpcStatuses) error {
	s := scanner{b: b}
	for s.next() {
		switch {
		case s.num == fRespBodyBytes && s.typ == protowire.VarintType:
			e.bytesOut = s.v
		case s.num == fRespCode && s.typ == protowire.BytesType:
			if err := uint32Value(s.val, &e.status); err != nil {
				return err
			}
		case (s.num == fRespHeaders || s.num == fRespTrailers) && s.typ == protowire.BytesType:
			k, v, err := mapEntry(s.val)
			if err != nil {
				return err
			}
			if string(k) != "grpc-status" {
				continue
			}
			if s.num == fRespTrailers {
				g.trailer, g.haveTrailer = v, true
			} else {
				g.header, g.haveHeader = v, true
			}
		}
	}
	return s.end()
}

// uint32Value reads a google.protobuf.UInt32Value.
func uint32Value(b []byte, v *uint32) error {
	s := scanner{b: b}
	for s.next() {
		if s.num == 1 && s.typ == protowire.VarintType {
			*v = uint32(s.v)
		}
	}
	return s.end()
}

// mapEntry reads a map<string, string> entry: a missing key or value is "".
func mapEntry(b []byte) (key, value []byte, err error) {
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.BytesType {
			continue
		}
		switch s.num {
		case 1:
			key = s.val
		case 2:
			value = s.val
		}
	}
	return key, value, s.end()
}

func connection(b []byte, e *facts) error {
	s := scanner{b: b}
	for s.next() {
		if s.typ != protowire.VarintType {
			continue
		}
		switch s.num {
		case fConnReceived:
			e.bytesIn = s.v
		case fConnSent:
			e.bytesOut = s.v
		}
	}
	return s.end()
}

// parseGRPCStatus reads a grpc-status value as grpcStatusOf does with
// strconv.Atoi (an optional sign, then decimal digits), without making a
// string of it: the status, or -1 when it is not one of 0..16.
func parseGRPCStatus(b []byte) int {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		if n <= 16 { // past 16 the value only matters as "too big"
			n = n*10 + int(c-'0')
		}
	}
	if n > 16 || neg && n != 0 {
		return -1
	}
	return n
}

// identifierBytes is the identifier's encoding, its parts joined (which
// merges them as protobuf does).
func identifierBytes(parts [][]byte) []byte {
	if len(parts) == 1 {
		return parts[0]
	}
	return bytes.Join(parts, nil)
}
