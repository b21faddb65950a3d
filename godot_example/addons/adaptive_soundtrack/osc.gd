class_name AdaptiveOsc
extends RefCounted
# OSC 1.0 messages (opensoundcontrol.stanford.edu/spec-1_0.html): big-endian int32/float32/float64,
# strings NUL-terminated and padded to 4 bytes, type tags after ','. Only what the adaptive protocol uses:
# single messages (no bundles) with arguments i, f, d, s. The same code runs under Godot 3 in
# godot_example/godot3_proof/adaptive_proof.gd (with Godot 3's names), which the test suite runs.

const MAX_DATAGRAM_BYTES := 1400


static func _string(s: String) -> PackedByteArray:
	var b := s.to_utf8_buffer()
	b.append(0)
	while b.size() % 4 != 0:
		b.append(0)
	return b


## The datagram of one message; `tags` gives each argument's type ("i", "f", "d" or "s"), e.g. "sfs".
static func encode(address: String, tags: String, args: Array) -> PackedByteArray:
	var out := StreamPeerBuffer.new()
	out.big_endian = true
	out.put_data(_string(address))
	out.put_data(_string("," + tags))
	for i in range(tags.length()):
		match tags[i]:
			"i":
				out.put_32(int(args[i]))
			"f":
				out.put_float(float(args[i]))
			"d":
				out.put_double(float(args[i]))
			"s":
				out.put_data(_string(str(args[i])))
			_:
				push_error("AdaptiveOsc: unsupported type tag '%s' (allowed: i, f, d, s)" % tags[i])
	return out.data_array


## [string, next offset], or [null, error text].
static func _read_string(data: PackedByteArray, offset: int) -> Array:
	var end := offset
	while end < data.size() and data[end] != 0:
		end += 1
	if end >= data.size():
		return [null, "string not NUL-terminated (truncated?)"]
	var s := data.slice(offset, end).get_string_from_utf8()
	return [s, offset + ((end - offset + 4) & ~3)]


## {"address": String, "args": Array} or {"error": String}.
static func decode(data: PackedByteArray) -> Dictionary:
	if data.size() > MAX_DATAGRAM_BYTES:
		return {"error": "datagram of %d bytes (allowed: at most %d)" % [data.size(), MAX_DATAGRAM_BYTES]}
	var r := _read_string(data, 0)
	if r[0] == null or not String(r[0]).begins_with("/"):
		return {"error": "not an OSC message"}
	var address: String = r[0]
	r = _read_string(data, r[1])
	if r[0] == null or not String(r[0]).begins_with(","):
		return {"error": address + ": no type tags"}
	var tags: String = r[0]
	var buf := StreamPeerBuffer.new()
	buf.big_endian = true
	buf.data_array = data
	buf.seek(r[1])
	var args := []
	for i in range(1, tags.length()):
		match tags[i]:
			"i":
				args.append(buf.get_32())
			"f":
				args.append(buf.get_float())
			"d":
				args.append(buf.get_double())
			"s":
				r = _read_string(data, buf.get_position())
				if r[0] == null:
					return {"error": address + ": " + str(r[1])}
				args.append(r[0])
				buf.seek(r[1])
			_:
				return {"error": address + ": unsupported type tag '" + tags[i] + "'"}
	if buf.get_position() != data.size():
		return {"error": address + ": the length does not match the type tags ," + tags.substr(1)}
	return {"address": address, "args": args}
