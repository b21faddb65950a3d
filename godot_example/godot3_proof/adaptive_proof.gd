# The adaptive protocol from a real Godot runtime: a Godot 3 script (Debian's godot3-server runs it headless)
# that speaks OSC over PacketPeerUDP and reads the TCP audio stream with StreamPeerTCP, the same way the
# Godot 4 addon (../addons/adaptive_soundtrack) does, written from docs/protocol.md.
#
#   ADAPTIVE_OSC_PORT=9000 ADAPTIVE_REPLY_PORT=9100 godot3-server --no-window -s adaptive_proof.gd
#
# It says hello, syncs its clock (ping/pong), sends scene states, a stinger and an audience vote, reads beats and audio blocks
# for ADAPTIVE_RUN_SECONDS (default 4) and prints one JSON object per line on stdout, prefixed "ADAPTIVE "
# (Godot prints its own lines too). tests/clients/test_godot3_proof.py checks them.
extends SceneTree

var udp := PacketPeerUDP.new()
var tcp := StreamPeerTCP.new()
var audio_buffer := PoolByteArray()
var best_round_trip := 1e9
var offset_seconds := 0.0  # server time - local time
var synced := false  # true once the clock sync is done: beats before it (the music plays from the server's start) have no arrival time
var pings := {}  # ping sequence -> local send time


func emit(d: Dictionary) -> void:
	print("ADAPTIVE " + to_json(d))


func now() -> float:
	return OS.get_ticks_usec() / 1e6


# ----------------------------------------------------------------- OSC 1.0 (big-endian, 4-byte padding)
static func osc_string(s: String) -> PoolByteArray:
	var b := s.to_utf8()
	b.append(0)
	while b.size() % 4 != 0:
		b.append(0)
	return b


static func osc_encode(address: String, tags: String, args: Array) -> PoolByteArray:
	var out := StreamPeerBuffer.new()
	out.big_endian = true
	out.put_data(osc_string(address))
	out.put_data(osc_string("," + tags))
	for i in range(tags.length()):
		match tags[i]:
			"i":
				out.put_32(int(args[i]))
			"f":
				out.put_float(float(args[i]))
			"d":
				out.put_double(float(args[i]))
			"s":
				out.put_data(osc_string(str(args[i])))
	return out.data_array


# Returns [string, next offset], or [null, error text].
static func osc_read_string(data: PoolByteArray, offset: int) -> Array:
	var end := offset
	while end < data.size() and data[end] != 0:
		end += 1
	if end >= data.size():
		return [null, "string not NUL-terminated"]
	var s := "" if end == offset else data.subarray(offset, end - 1).get_string_from_utf8()
	return [s, offset + ((end - offset + 4) & ~3)]


# Returns {"address": String, "args": Array} or {"error": String}.
static func osc_decode(data: PoolByteArray) -> Dictionary:
	var r := osc_read_string(data, 0)
	if r[0] == null or not r[0].begins_with("/"):
		return {"error": "not an OSC message"}
	var address: String = r[0]
	r = osc_read_string(data, r[1])
	if r[0] == null or not r[0].begins_with(","):
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
				r = osc_read_string(data, buf.get_position())
				if r[0] == null:
					return {"error": address + ": " + r[1]}
				args.append(r[0])
				buf.seek(r[1])
			_:
				return {"error": address + ": unsupported type tag " + tags[i]}
	if buf.get_position() != data.size():
		return {"error": address + ": length does not match the type tags"}
	return {"address": address, "args": args}


func send(address: String, tags: String, args: Array) -> void:
	udp.put_packet(osc_encode(address, tags, args))


# ----------------------------------------------------------------- receiving
func poll_udp() -> void:
	while udp.get_available_packet_count() > 0:
		var packet := udp.get_packet()
		var arrival := now()
		var m := osc_decode(packet)
		if m.has("error"):
			emit({"kind": "decode_error", "message": m["error"]})
			continue
		var a: Array = m["args"]
		match m["address"]:
			"/adaptive/welcome":
				emit({"kind": "welcome", "protocol_version": a[0], "session_id": a[1], "sample_rate_hz": a[2],
					"block_frames": a[3], "lookahead_ms": a[4], "audio_tcp_port": a[5]})
			"/adaptive/pong":
				if pings.has(a[0]):
					var t0: float = pings[a[0]]
					var t1: float = a[1] + a[2] / 1e6
					var t2: float = a[3] + a[4] / 1e6
					var round_trip := (arrival - t0) - (t2 - t1)
					if round_trip < best_round_trip:
						best_round_trip = round_trip
						offset_seconds = ((t1 - t0) + (t2 - arrival)) / 2.0
			"/adaptive/beat":
				emit({"kind": "beat", "frame": a[0], "server_time_s": a[1] + a[2] / 1e6, "cue": a[3],
					"bar_index": a[4], "beat_in_bar": a[5], "bpm": a[6], "arrival_server_time_s": arrival + offset_seconds, "synced": synced})
			"/adaptive/bar":
				emit({"kind": "bar", "frame": a[0], "server_time_s": a[1] + a[2] / 1e6, "cue": a[3], "bar_index": a[4]})
			"/adaptive/cue_change":
				emit({"kind": "cue_change", "frame": a[0], "server_time_s": a[1] + a[2] / 1e6, "cue": a[3], "previous": a[4]})
			"/adaptive/stinger_played":
				emit({"kind": "stinger_played", "frame": a[0], "server_time_s": a[1] + a[2] / 1e6, "stinger": a[3]})
			"/adaptive/transition":
				emit({"kind": "transition", "frame": a[0], "phase": a[3], "from_cue": a[4], "to_cue": a[5]})
			"/adaptive/error":
				emit({"kind": "error", "code": a[0], "message": a[1]})


# The TCP audio stream: 32-byte little-endian header "<4sIQIHHII" (magic ADA1) + interleaved PCM.
func poll_tcp() -> void:
	if tcp.get_status() != StreamPeerTCP.STATUS_CONNECTED:
		return
	var available := tcp.get_available_bytes()
	if available > 0:
		var got: Array = tcp.get_data(available)
		if got[0] == OK:
			audio_buffer.append_array(got[1])
	while audio_buffer.size() >= 32:
		poll_udp()  # between blocks too: a datagram's arrival time is when this script reads it
		if not (audio_buffer[0] == 65 and audio_buffer[1] == 68 and audio_buffer[2] == 65 and audio_buffer[3] == 49):
			audio_buffer.remove(0)  # resync on the magic
			continue
		var h := StreamPeerBuffer.new()
		h.big_endian = false
		h.data_array = audio_buffer.subarray(0, 31)
		h.seek(4)
		var sequence := h.get_u32()
		var first_frame := h.get_u64()
		var n_frames := h.get_u32()
		var channels := h.get_u16()
		var sample_format := h.get_u16()
		var rate := h.get_u32()
		var bytes_per_sample := 2 if sample_format == 1 else 4
		var pcm_bytes := n_frames * channels * bytes_per_sample
		if audio_buffer.size() < 32 + pcm_bytes:
			return
		var pcm := StreamPeerBuffer.new()
		pcm.big_endian = false
		pcm.data_array = audio_buffer.subarray(32, 32 + pcm_bytes - 1)
		var sum := 0.0
		for i in range(n_frames * channels):
			var x: float = pcm.get_16() / 32767.0 if sample_format == 1 else pcm.get_float()
			sum += x * x
		emit({"kind": "audio", "sequence": sequence, "first_frame": first_frame, "n_frames": n_frames,
			"channels": channels, "sample_format": sample_format, "sample_rate_hz": rate,
			"rms": sqrt(sum / max(1, n_frames * channels))})
		audio_buffer = audio_buffer.subarray(32 + pcm_bytes, audio_buffer.size() - 1) if audio_buffer.size() > 32 + pcm_bytes else PoolByteArray()


func wait_until(seconds: float) -> void:
	var deadline := now() + seconds
	while now() < deadline:
		poll_udp()
		poll_tcp()
		OS.delay_msec(2)


func _init() -> void:
	var osc_port := int(OS.get_environment("ADAPTIVE_OSC_PORT"))
	var reply_port := int(OS.get_environment("ADAPTIVE_REPLY_PORT"))
	var run_seconds := 4.0
	if OS.get_environment("ADAPTIVE_RUN_SECONDS") != "":
		run_seconds = float(OS.get_environment("ADAPTIVE_RUN_SECONDS"))
	var err := udp.listen(reply_port, "127.0.0.1")
	if err != OK:
		emit({"kind": "fatal", "message": "cannot listen on udp port %d (error %d)" % [reply_port, err]})
		quit()
		return
	udp.set_dest_address("127.0.0.1", osc_port)
	send("/adaptive/hello", "iiiss", [reply_port, 48000, 2, "s16", "godot3-proof"])
	wait_until(0.5)
	for sequence in range(1, 9):
		pings[sequence] = now()
		send("/adaptive/ping", "i", [sequence])
		wait_until(0.03)
	emit({"kind": "clock", "offset_s": offset_seconds, "round_trip_s": best_round_trip})
	synced = true
	tcp.connect_to_host("127.0.0.1", int(OS.get_environment("ADAPTIVE_AUDIO_PORT")))
	send("/adaptive/scene", "sfs", ["calm", 0.5, "forest"])
	wait_until(1.2)
	send("/adaptive/scene", "sfs", ["angry", 0.8, "forest"])
	wait_until(1.0)
	send("/adaptive/stinger", "s", ["danger"])
	# An audience vote, as the addon's vote("tense", 0.9) sends it (the server records it).
	send("/adaptive/audience/vote", "sfff", ["tense", 0.0, 0.0, 0.9])
	wait_until(max(0.5, run_seconds - 2.2))
	emit({"kind": "done"})
	tcp.disconnect_from_host()
	udp.close()
	quit()
