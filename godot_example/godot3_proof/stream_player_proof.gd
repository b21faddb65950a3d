# The Godot 4 addon's stream player (../addons/adaptive_soundtrack/adaptive_stream_player.gd), its buffering
# rules ported to Godot 3 and run headless by Debian's godot3-server against a real server: after a hitch it
# skips the oldest frames back to the target latency, and a lost connection is retried with exponential
# backoff, not every frame. No Godot 4 runtime can be installed here (godot_example/README.md); the rules
# below are the addon's, line for line where Godot 3 allows (tests/clients/test_godot3_proof.py checks
# that the constants and the skip rule match).
#
#   ADAPTIVE_AUDIO_PORT=9001 godot3-server --no-window -s stream_player_proof.gd
#
# The playback is simulated: Godot 3's headless server has no audio driver to drain an AudioStreamGenerator,
# so a counter drains the queued frames at the session rate, as a sound card would. Phase 1: stream for 1.5 s,
# then block the main loop for ADAPTIVE_HITCH_SECONDS (default 0.8: a long frame), then stream on; phase 2:
# print {"kind": "stop_server"} and, once the server is gone, retry for 4 s. One JSON object per line on
# stdout, prefixed "ADAPTIVE ".
extends SceneTree

const RECONNECT_FIRST_SECONDS := 0.25
const RECONNECT_MAX_SECONDS := 8.0
const TARGET_LATENCY_SECONDS := 0.1

var tcp := StreamPeerTCP.new()
var port := 0
var rate := 48000
var bytes := PoolByteArray()
var pending := 0  # frames received and not yet given to the (simulated) generator
var pushed := 0  # frames given to the generator
var play_start := -1.0  # when playback started (the simulated sound card drains from then)
var played := 0  # frames the simulated sound card has played (an underrun plays silence: nothing is owed)
var drained_at := 0.0  # when it last drained
var skipped_frames := 0
var reconnects := 0
var reconnect_delay := RECONNECT_FIRST_SECONDS
var reconnect_at := 0.0
var attempts := []  # times of the connection attempts after the first


func emit(d: Dictionary) -> void:
	print("ADAPTIVE " + to_json(d))


func now() -> float:
	return OS.get_ticks_usec() / 1e6


func queued() -> int:  # frames in the generator, not yet played
	if play_start >= 0:
		var t := now()
		played = int(min(pushed, played + (t - drained_at) * rate))
		drained_at = t
	return pushed - played


func latency_seconds() -> float:
	return (pending + queued()) / float(rate)


# Whole blocks out of the stream (32-byte header "<4sIQIHHII", magic ADA1, then PCM): frames pending.
func parse_blocks() -> void:
	while bytes.size() >= 32:
		var h := StreamPeerBuffer.new()
		h.big_endian = false
		h.data_array = bytes.subarray(0, 31)
		h.seek(16)
		var n_frames := h.get_u32()
		var channels := h.get_u16()
		var bytes_per_sample := 2 if h.get_u16() == 1 else 4
		rate = h.get_u32()
		var size := 32 + n_frames * channels * bytes_per_sample
		if bytes.size() < size:
			return
		pending += n_frames
		bytes = bytes.subarray(size, bytes.size() - 1) if bytes.size() > size else PoolByteArray()


# One _process of the addon's player: read, reconnect with backoff, start playing at the target, skip back
# after a hitch, feed the generator up to the target.
func step() -> void:
	if tcp.get_status() == StreamPeerTCP.STATUS_CONNECTED:
		var available := tcp.get_available_bytes()
		if available > 0:
			var got: Array = tcp.get_data(available)
			if got[0] == OK:
				bytes.append_array(got[1])
		parse_blocks()
		reconnect_delay = RECONNECT_FIRST_SECONDS
	elif tcp.get_status() in [StreamPeerTCP.STATUS_NONE, StreamPeerTCP.STATUS_ERROR]:
		var t := now()
		if t >= reconnect_at:  # exponential backoff: not every frame while the server is away
			bytes = PoolByteArray()
			tcp.connect_to_host("127.0.0.1", port)
			reconnects += 1
			attempts.append(t)
			reconnect_at = t + reconnect_delay
			reconnect_delay = min(reconnect_delay * 2.0, RECONNECT_MAX_SECONDS)
	var target_frames := int(TARGET_LATENCY_SECONDS * rate)
	if play_start < 0 and pending >= target_frames:
		play_start = now()
		drained_at = play_start
	if play_start >= 0:
		var in_generator := queued()
		var excess := pending + in_generator - 2 * target_frames
		if excess > 0:  # after a hitch: skip the oldest back to the target latency
			var skip := int(min(pending, pending + in_generator - target_frames))
			skipped_frames += skip
			pending -= skip
		var n := int(min(pending, target_frames - in_generator))
		if n > 0:
			pushed += n
			pending -= n


func run_for(seconds: float) -> Array:  # [max latency, latency at the end]
	var deadline := now() + seconds
	var worst := 0.0
	while now() < deadline:
		step()
		worst = max(worst, latency_seconds())
		OS.delay_msec(16)  # a 60 fps game's frames
	return [worst, latency_seconds()]


func _init() -> void:
	port = int(OS.get_environment("ADAPTIVE_AUDIO_PORT"))
	var hitch_seconds := 0.8
	if OS.get_environment("ADAPTIVE_HITCH_SECONDS") != "":
		hitch_seconds = float(OS.get_environment("ADAPTIVE_HITCH_SECONDS"))
	tcp.connect_to_host("127.0.0.1", port)
	var steady: Array = run_for(1.5)
	OS.delay_msec(int(hitch_seconds * 1000))  # the hitch: the game's main loop stalls, the server streams on
	var skipped_before := skipped_frames
	step()  # the first frame after it reads what piled up in the socket, and skips back
	var right_after := latency_seconds()
	var after: Array = run_for(1.0)
	emit({"kind": "hitch", "hitch_s": hitch_seconds, "target_s": TARGET_LATENCY_SECONDS,
		"steady_max_latency_s": steady[0], "latency_after_first_frame_s": right_after,
		"skipped_s": (skipped_frames - skipped_before) / float(rate), "max_latency_after_s": after[0],
		"played": play_start >= 0, "reconnects": reconnects})
	emit({"kind": "stop_server"})
	var deadline := now() + 20.0
	while tcp.get_status() == StreamPeerTCP.STATUS_CONNECTED and now() < deadline:
		step()
		if tcp.get_available_bytes() == 0:  # Godot 3 notices a closed peer on a read
			tcp.get_data(0)
		OS.delay_msec(16)
	var lost_at := now()
	emit({"kind": "lost", "status": tcp.get_status()})
	attempts = []
	run_for(4.0)
	var since := []
	for t in attempts:
		since.append(t - lost_at)
	emit({"kind": "backoff", "attempts_s": since, "reconnects": reconnects})
	emit({"kind": "done"})
	tcp.disconnect_from_host()
	quit()
