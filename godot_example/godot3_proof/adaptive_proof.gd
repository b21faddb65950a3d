# The adaptive protocol from a real Godot runtime: a Godot 3 script (Debian's godot3-server runs it headless)
# that speaks OSC over PacketPeerUDP and reads the TCP audio stream with StreamPeerTCP, the same way the
# Godot 4 addon (../addons/adaptive_soundtrack) does, written from docs/protocol.md.
#
#   ADAPTIVE_OSC_PORT=9000 ADAPTIVE_REPLY_PORT=9100 godot3-server --no-window -s adaptive_proof.gd
#
# It says hello (for the session ADAPTIVE_SESSION, default "": the default one), syncs its clock (ping/pong),
# sends scene states, a stinger and an audience vote, reads beats and audio blocks (from the TCP port its
# welcome names) for ADAPTIVE_RUN_SECONDS (default 4) and prints one JSON object per line on stdout, prefixed
# "ADAPTIVE " (Godot prints its own lines too). tests/clients/test_godot3_proof.py checks them.
# A node of a cluster may answer the hello with session_elsewhere: the script follows it as the addon does
# (redirect_problem is the addon's, word for word; at most MAX_REDIRECTS in a row) and says the same hello
# to the node named there. Without a welcome within ADAPTIVE_HELLO_TIMEOUT_S (default 10) it prints
# "no_welcome" and "done" and stops.
extends SceneTree

const MAX_REDIRECTS := 3

var udp := PacketPeerUDP.new()
var tcp := StreamPeerTCP.new()
var audio_buffer := PoolByteArray()
var best_round_trip := 1e9
var offset_seconds := 0.0  # server time - local time
var synced := false  # true once the clock sync is done: beats before it (the music plays from the server's start) have no arrival time
var pings := {}  # ping sequence -> local send time
var host := "127.0.0.1"  # the node said hello to: the first, or the one a session_elsewhere named
var osc_port := 0
var reply_port := 0
var session := ""
var welcome := {}
var redirect_failure := ""
var redirects_in_a_row := 0
var redirect_chain := []
var next_hello := 0.0
var token_sent := false  # the welcome's client_id went first on the TCP audio stream (it ties it to the session)


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


func hello() -> void:
	send("/adaptive/hello", "iiissssss", [reply_port, 48000, 2, "s16", "godot3-proof", "", "", "", session])
	next_hello = now() + 1.0


# ----------------------------------------------------------------- a cluster's redirect (as the addon)
## Why a session_elsewhere's arguments [session_id, host, osc_port, zmq_control_port, audio_tcp_port] cannot
## be followed, naming the argument and what is allowed (docs/protocol.md's table); "" when they can.
static func redirect_problem(a: Array) -> String:
	var names := ["session_id", "host", "osc_port", "zmq_control_port", "audio_tcp_port"]
	if a.size() != names.size():
		return "/adaptive/session/elsewhere has %d arguments (allowed: 5: session_id host osc_port zmq_control_port audio_tcp_port)" % a.size()
	for i in range(names.size()):
		var want: int = TYPE_STRING if i < 2 else TYPE_INT
		if typeof(a[i]) != want:
			var got := "s" if typeof(a[i]) == TYPE_STRING else ("i" if typeof(a[i]) == TYPE_INT else "f or d")
			return "/adaptive/session/elsewhere argument '%s' is of type %s (allowed: %s)" % [names[i], got, "a string, s" if want == TYPE_STRING else "an integer, i"]
	var session_id: String = a[0]
	var allowed := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	var id_ok := session_id.length() >= 1 and session_id.length() <= 32
	for c in session_id:
		id_ok = id_ok and allowed.find(c) >= 0
	if not id_ok:
		return "/adaptive/session/elsewhere argument 'session_id' is '%s' (allowed: 1 to 32 letters, digits, _ and -)" % session_id
	var node_host: String = a[1]
	if node_host.length() < 1 or node_host.length() > 253 or node_host.strip_edges() != node_host:
		return "/adaptive/session/elsewhere argument 'host' is '%s' (allowed: an address or name of 1 to 253 characters, no surrounding spaces)" % node_host
	var lowest := [1, 0, 0]
	for i in range(2, 5):
		if a[i] < lowest[i - 2] or a[i] > 65535:
			return "/adaptive/session/elsewhere argument '%s' is %d (allowed: an integer from %d to 65535%s)" % [names[i], a[i], lowest[i - 2], ", 0: none" if lowest[i - 2] == 0 else ""]
	return ""


func follow_redirect(a: Array) -> void:
	var problem := redirect_problem(a)
	if problem == "" and not welcome.empty():
		problem = "a session_elsewhere arrived after the welcome of session '%s' (allowed: only as the answer to a hello)" % welcome["session_id"]
	if problem != "":
		refuse_redirect(problem)
		return
	if redirect_failure != "":
		return
	var target := "udp://%s:%d" % [a[1], a[2]]
	if redirects_in_a_row >= MAX_REDIRECTS:
		redirect_failure = "redirected more than %d times in a row between the nodes of a cluster (%s -> %s, session '%s'); not followed: is the cluster's directory consistent?" % [MAX_REDIRECTS, PoolStringArray(redirect_chain).join(" -> "), target, a[0]]
		emit({"kind": "error", "code": "client_redirect_loop", "message": redirect_failure})
		return
	# Godot 3's PacketPeerUDP cannot say which port it bound to: the proof listens on the same reply port again.
	udp.close()
	var err := udp.listen(reply_port, "127.0.0.1" if a[1].begins_with("127.") or a[1] == "localhost" else "*")
	if err == OK:
		err = udp.set_dest_address(a[1], a[2])
	if err != OK:
		emit({"kind": "fatal", "message": "cannot reopen udp port %d for %s (error %d)" % [reply_port, target, err]})
		return
	emit({"kind": "redirected", "session_id": a[0], "host": a[1], "osc_port": a[2], "zmq_control_port": a[3],
		"audio_tcp_port": a[4], "from_host": host, "from_osc_port": osc_port})
	redirects_in_a_row += 1
	redirect_chain.append(target)
	host = a[1]
	osc_port = a[2]
	session = a[0]
	hello()


func refuse_redirect(problem: String) -> void:
	emit({"kind": "error", "code": "client_bad_redirect",
		"message": "%s; the redirect was not followed (still udp://%s:%d, session '%s')" % [problem, host, osc_port, session]})


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
				welcome = {"session_id": a[1], "audio_tcp_port": a[5], "client_id": a[8] if a.size() >= 11 else ""}
				redirects_in_a_row = 0
				emit({"kind": "welcome", "protocol_version": a[0], "session_id": a[1], "sample_rate_hz": a[2],
					"block_frames": a[3], "lookahead_ms": a[4], "audio_tcp_port": a[5], "host": host, "osc_port": osc_port})
			"/adaptive/session/elsewhere":
				follow_redirect(a)
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
	if not token_sent:
		tcp.put_data((str(welcome["client_id"]) + "\n").to_ascii())
		token_sent = true
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
	osc_port = int(OS.get_environment("ADAPTIVE_OSC_PORT"))
	reply_port = int(OS.get_environment("ADAPTIVE_REPLY_PORT"))
	session = OS.get_environment("ADAPTIVE_SESSION")
	var run_seconds := 4.0
	if OS.get_environment("ADAPTIVE_RUN_SECONDS") != "":
		run_seconds = float(OS.get_environment("ADAPTIVE_RUN_SECONDS"))
	var hello_timeout := 10.0
	if OS.get_environment("ADAPTIVE_HELLO_TIMEOUT_S") != "":
		hello_timeout = float(OS.get_environment("ADAPTIVE_HELLO_TIMEOUT_S"))
	var err := udp.listen(reply_port, "127.0.0.1")
	if err != OK:
		emit({"kind": "fatal", "message": "cannot listen on udp port %d (error %d)" % [reply_port, err]})
		quit()
		return
	udp.set_dest_address(host, osc_port)
	redirect_chain = ["udp://%s:%d" % [host, osc_port]]
	hello()
	# The welcome: at once from a single server's default session; a session made on its first hello
	# takes 0.5 to 3 s. Say hello again each second (as the addon does) unless the redirects looped.
	var hello_deadline := now() + hello_timeout
	while welcome.empty() and now() < hello_deadline:
		poll_udp()
		if welcome.empty() and redirect_failure == "" and now() >= next_hello:
			hello()
		OS.delay_msec(2)
	if welcome.empty():
		emit({"kind": "no_welcome", "host": host, "osc_port": osc_port, "session": session})
		emit({"kind": "done"})
		udp.close()
		quit()
		return
	wait_until(0.5)
	for sequence in range(1, 9):
		pings[sequence] = now()
		send("/adaptive/ping", "i", [sequence])
		wait_until(0.03)
	emit({"kind": "clock", "offset_s": offset_seconds, "round_trip_s": best_round_trip})
	synced = true
	tcp.connect_to_host(host, welcome["audio_tcp_port"])  # the node that welcomed us, where its welcome says
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
