class_name AdaptiveSoundtrack
extends Node
## Connects to `adaptive serve` over OSC (PacketPeerUDP): says hello, sends scene state on change at a
## capped rate, triggers stingers, syncs its clock (ping/pong), and emits beat, bar, cue and stinger signals
## when the music you hear reaches them (or on arrival). Written from docs/protocol.md.
## It processes while the game is paused (process_mode ALWAYS, set in _init; change it in the Inspector if
## you want otherwise): pausing the tree for a menu must not stop the music or its callbacks.
## On a cluster (docs/cluster.md) a node may answer the hello with session_elsewhere: the node then closes
## its socket, opens one to the node named there (host, osc_port and session change to it) and says the same
## hello again, as the Python client does: at most MAX_REDIRECTS in a row, then redirect_failure and an error.

signal welcome_received(info: Dictionary)
## bar_index from 0, beat_in_bar from 1; info has frame, server_time, cue, bpm.
signal beat(bar_index: int, beat_in_bar: int, info: Dictionary)
signal bar(bar_index: int, info: Dictionary)
signal cue_changed(cue: String, previous: String, info: Dictionary)
signal transition(phase: String, from_cue: String, to_cue: String, info: Dictionary)
signal stinger_played(stinger: String, info: Dictionary)
## The server rejected a message of ours (code and sentence, see docs/protocol.md "Errors"), or this node
## refused a redirect: "client_bad_redirect" (an argument out of the protocol's range, named; nothing changed)
## or "client_redirect_loop" (more than MAX_REDIRECTS in a row; the message names every node of the loop).
signal server_error(code: String, message: String)
## A session_elsewhere was followed: info has the session_id, host, osc_port, zmq_control_port and
## audio_tcp_port it named and from_host, from_osc_port (the node that sent it). The welcome follows.
signal redirected(info: Dictionary)

enum DispatchTiming { WHEN_HEARD, ON_ARRIVAL }

## session_elsewhere answers followed in a row (until a welcome); the next is not followed. A cluster's
## directory sends a client to the hosting node at once: one. The Python client's MAX_REDIRECTS.
const MAX_REDIRECTS := 3

@export var host := "127.0.0.1"
@export var osc_port := 9000
@export var client_name := "godot"
## On a server with credentials (docs/network.md): the role to ask for (control, listener, audience) and
## that role's secret (from the server's secrets.toml; keep it out of version control). Empty without.
@export var role := ""
@export var secret := ""
## The session to join (docs/sessions.md): empty for the server's default session, "new" for a new one
## (welcome's session_id names it), or a session id (joined, or made if there is none).
@export var session := ""
@export var max_scene_rate_hz := 20.0
@export var dispatch_timing: DispatchTiming = DispatchTiming.WHEN_HEARD
## Added to the ping-synced time when no AdaptiveStreamPlayer plays the stream (seconds).
@export var extra_latency_seconds := 0.0
@export_group("Scene state outside every zone")
@export var emotion := "calm"
@export_range(0.0, 1.0) var intensity := 0.3
@export var location := ""

var welcome: Dictionary = {}
var current_cue := ""
var offset_seconds := 0.0  ## server time minus local time (Time.get_ticks_usec), from the best ping
var round_trip_seconds := INF
## Set by AdaptiveStreamPlayer: it knows which server frame is being heard.
var stream_player = null
## After a followed session_elsewhere: the last one's info (as the redirected signal's); else empty.
var redirected_from: Dictionary = {}
## Why hellos stopped: more than MAX_REDIRECTS redirects in a row (the cluster would answer the same); "" else.
var redirect_failure := ""

var _udp := PacketPeerUDP.new()
var _zones: Array = []
var _sent_scene := []
var _pending_scene := []
var _last_scene_send := -INF
var _pings := {}  # sequence -> local send time
var _next_ping := 0
var _next_sync := 0.0
var _next_hello := 0.0
var _due: Array = []  # [frame, server_time, Callable]
var _redirects_in_a_row := 0
var _redirect_chain: Array = []  # "udp://host:port" of each node said hello to since the last welcome


static func now() -> float:
	return Time.get_ticks_usec() / 1e6


func _init() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS


func _ready() -> void:
	var err := _udp.bind(0, _bind_address(host))
	if err != OK:
		push_error("AdaptiveSoundtrack: cannot bind a UDP port (error %d)" % err)
		set_process(false)
		return
	_udp.set_dest_address(host, osc_port)
	_redirect_chain = ["udp://%s:%d" % [host, osc_port]]
	_hello()
	_push_scene()


## Loopback servers answer on loopback; a remote one needs a reachable interface.
static func _bind_address(node_host: String) -> String:
	return "127.0.0.1" if node_host.begins_with("127.") or node_host == "localhost" else "*"


func _hello(cookie := "") -> void:
	# After the server's retry the hello carries its cookie and, with a secret, the HMAC-SHA256 proof of the
	# role's secret over "adaptive-hello|COOKIE|ROLE|REPLY_PORT" (the secret never crosses the wire).
	var port := _udp.get_local_port()
	var proof := ""
	if cookie != "" and secret != "" and role != "":
		var message := "adaptive-hello|%s|%s|%d" % [cookie, role, port]
		proof = Crypto.new().hmac_digest(HashingContext.HASH_SHA256, secret.to_utf8_buffer(), message.to_utf8_buffer()).hex_encode()
	_send("/adaptive/hello", "iiissssss", [port, int(AudioServer.get_mix_rate()), 2, "s16", client_name.left(64), role, cookie, proof, session.left(32)])
	_next_hello = now() + 1.0


func _send(address: String, tags: String, args: Array) -> void:
	_udp.put_packet(AdaptiveOsc.encode(address, tags, args))


# ------------------------------------------------------------------ a cluster's redirect
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


## A session_elsewhere (docs/cluster.md): check it, then move to the node it names and say the same hello
## there, as bridge/client.py's AdaptiveClient.hello does.
func _follow_redirect(a: Array) -> void:
	var problem := redirect_problem(a)
	if problem == "" and not welcome.is_empty():
		problem = "a session_elsewhere arrived after the welcome of session '%s' (allowed: only as the answer to a hello)" % welcome["session_id"]
	if problem != "":
		_refuse_redirect(problem)
		return
	if redirect_failure != "":
		return  # the loop was already reported; a late duplicate
	var target := "udp://%s:%d" % [a[1], a[2]]
	if _redirects_in_a_row >= MAX_REDIRECTS:
		redirect_failure = "redirected more than %d times in a row between the nodes of a cluster (%s -> %s, session '%s'); not followed: is the cluster's directory consistent?" % [MAX_REDIRECTS, " -> ".join(PackedStringArray(_redirect_chain)), target, a[0]]
		push_error("AdaptiveSoundtrack: " + redirect_failure)
		server_error.emit("client_redirect_loop", redirect_failure)
		return
	var udp := PacketPeerUDP.new()
	var err := udp.bind(0, _bind_address(a[1]))
	if err == OK:
		err = udp.set_dest_address(a[1], a[2])
	if err != OK:
		udp.close()
		_refuse_redirect("cannot open a UDP socket to %s named by /adaptive/session/elsewhere (error %d)" % [target, err])
		return
	_udp.close()  # the node that redirected has nothing of ours: nothing was joined there
	_udp = udp
	redirected_from = {"session_id": a[0], "host": a[1], "osc_port": a[2], "zmq_control_port": a[3],
		"audio_tcp_port": a[4], "from_host": host, "from_osc_port": osc_port}
	_redirects_in_a_row += 1
	_redirect_chain.append(target)
	host = a[1]
	osc_port = a[2]
	session = a[0]
	print("AdaptiveSoundtrack: session '%s' is hosted by %s (udp://%s:%d said so, session_elsewhere); saying hello there" % [session, target, redirected_from["from_host"], redirected_from["from_osc_port"]])
	redirected.emit(redirected_from)
	_hello()


## A redirect not followed: nothing changed; the reason goes to server_error and the Output panel.
func _refuse_redirect(problem: String) -> void:
	var message := "%s; the redirect was not followed (still udp://%s:%d, session '%s')" % [problem, host, osc_port, session]
	push_error("AdaptiveSoundtrack: " + message)
	server_error.emit("client_bad_redirect", message)


# ------------------------------------------------------------------ scene state and stingers
## Sets the scene state outside every zone (sent at once if no zone is active).
func set_default_scene(new_emotion: String, new_intensity: float, new_location: String) -> void:
	emotion = new_emotion
	intensity = new_intensity
	location = new_location
	_push_scene()


## Plays a stinger at its quantized boundary (names: `adaptive bank`).
func trigger_stinger(stinger: String) -> void:
	_send("/adaptive/stinger", "s", [stinger.left(64)])


## Sets the emotion as a valence/arousal point, each -1..1.
func set_emotion_point(valence: float, arousal: float) -> void:
	_send("/adaptive/emotion/point", "ff", [clampf(valence, -1, 1), clampf(arousal, -1, 1)])


## Votes as the audience (docs/audience.md) for a named emotion of the mapping (calm, tense, ...) and,
## optionally, an intensity 0..1 (-1: no opinion): /adaptive/audience/vote, as the Python client's vote().
## Ask for the role "audience" on a server with credentials; at most 10 votes a second count (more get a
## rate_limited error). Returns false, with push_error, for an empty name or an intensity out of range.
func vote(vote_emotion: String, vote_intensity := -1.0) -> bool:
	if vote_emotion.is_empty():
		push_error("AdaptiveSoundtrack.vote: needs an emotion name (vote_point(valence, arousal) votes for a point)")
		return false
	if not _vote_intensity_ok(vote_intensity):
		return false
	_send("/adaptive/audience/vote", "sfff", [vote_emotion.left(64), 0.0, 0.0, vote_intensity])
	return true


## Votes as the audience for a valence/arousal point (each -1..1, clamped) and, optionally, an intensity
## 0..1 (-1: no opinion); see vote(). Returns false, with push_error, for an intensity out of range.
func vote_point(valence: float, arousal: float, vote_intensity := -1.0) -> bool:
	if not _vote_intensity_ok(vote_intensity):
		return false
	_send("/adaptive/audience/vote", "sfff", ["", clampf(valence, -1, 1), clampf(arousal, -1, 1), vote_intensity])
	return true


func _vote_intensity_ok(vote_intensity: float) -> bool:
	if vote_intensity == -1.0 or (vote_intensity >= 0.0 and vote_intensity <= 1.0):
		return true
	push_error("AdaptiveSoundtrack: a vote's intensity is 0..1, or -1 for no opinion (got %s)" % vote_intensity)
	return false


## Forces a cue ("" hands the choice back to the mapping).
func force_cue(cue: String) -> void:
	_send("/adaptive/cue", "s", [cue.left(64)])


func enter_zone(zone) -> void:
	if not zone in _zones:
		_zones.append(zone)
	_push_scene()


func exit_zone(zone) -> void:
	if zone in _zones:
		_zones.erase(zone)
		_push_scene()


## Sends the active state: the highest-priority zone's (latest entered among equals), else the default.
func _push_scene() -> void:
	var alive: Array = []
	for zone in _zones:
		if is_instance_valid(zone):  # a zone freed without leaving (it leaves in its _exit_tree) is skipped
			alive.append(zone)
	_zones = alive
	var top = null
	for zone in _zones:
		if top == null or zone.priority >= top.priority:
			top = zone
	var state := [emotion, clampf(intensity, 0, 1), location]
	if top != null:
		state = [top.emotion, clampf(top.intensity, 0, 1), top.location if top.location != "" else location]
	if state != _sent_scene:
		_pending_scene = state
	_flush_scene()


func _flush_scene() -> void:
	if _pending_scene.is_empty() or now() - _last_scene_send < 1.0 / max_scene_rate_hz:
		return
	_send("/adaptive/scene", "sfs", [String(_pending_scene[0]).left(64), _pending_scene[1], String(_pending_scene[2]).left(64)])
	_sent_scene = _pending_scene
	_pending_scene = []
	_last_scene_send = now()


# ------------------------------------------------------------------ receiving
func _process(_delta: float) -> void:
	while _udp.get_available_packet_count() > 0:
		var packet := _udp.get_packet()
		_handle(AdaptiveOsc.decode(packet), now())
	_flush_scene()
	var t := now()
	if welcome.is_empty() and t >= _next_hello and redirect_failure == "":
		_hello()  # the server was not up yet, or the datagram was lost (to the node a redirect named, if any)
	elif not welcome.is_empty() and t >= _next_sync:
		# Clock sync: one ping per frame, 8 in a row, again every 10 s.
		_next_ping += 1
		_pings[_next_ping] = t
		_send("/adaptive/ping", "i", [_next_ping])
		# The pings also renew the client's lease: at least three per lease.
		_next_sync = t + (minf(10.0, welcome["lease_s"] / 3.0) if _next_ping % 8 == 0 else 0.0)
	_dispatch_due()


func _handle(m: Dictionary, arrival: float) -> void:
	if m.has("error"):
		server_error.emit("client_decode", "undecodable datagram from the server: " + str(m["error"]))
		return
	var a: Array = m["args"]
	var address: String = m["address"]
	if address == "/adaptive/retry":
		_hello(a[0])  # the server asks for the cookie round trip (and the proof of the role)
		return
	if address == "/adaptive/session/elsewhere":
		_follow_redirect(a)
		return
	if address == "/adaptive/welcome":
		_redirects_in_a_row = 0  # "in a row": a welcome ends the run
		_redirect_chain = ["udp://%s:%d" % [host, osc_port]]
		welcome = {"protocol_version": a[0], "session_id": a[1], "sample_rate_hz": a[2], "block_frames": a[3],
			"lookahead_ms": a[4], "audio_tcp_port": a[5], "client_id": "", "role": "", "lease_s": 30}
		if a.size() >= 11:
			welcome.merge({"client_id": a[8], "role": a[9], "lease_s": a[10]}, true)
		welcome_received.emit(welcome)
		_sent_scene = []  # a state sent before the server was up was lost: send it again
		_push_scene()
		return
	if address == "/adaptive/pong":
		if _pings.has(a[0]):
			var t0: float = _pings[a[0]]
			_pings.erase(a[0])
			var t1: float = a[1] + a[2] / 1e6
			var t2: float = a[3] + a[4] / 1e6
			var rtt := (arrival - t0) - (t2 - t1)  # RFC 5905: the sample with the smallest delay wins
			if rtt < round_trip_seconds:
				round_trip_seconds = rtt
				offset_seconds = ((t1 - t0) + (t2 - arrival)) / 2.0
		return
	if address == "/adaptive/error":
		server_error.emit(a[0], a[1])
		push_warning("AdaptiveSoundtrack: the server said %s: %s" % [a[0], a[1]])
		return
	if a.size() < 3:
		return
	var info := {"frame": a[0], "server_time": a[1] + a[2] / 1e6}
	match address:
		"/adaptive/beat":
			info.merge({"cue": a[3], "bar_index": a[4], "beat_in_bar": a[5], "bpm": a[6]})
			_schedule(info, _emit_beat.bind(info))
		"/adaptive/bar":
			info.merge({"cue": a[3], "bar_index": a[4]})
			_schedule(info, _emit_bar.bind(info))
		"/adaptive/cue_change":
			info.merge({"cue": a[3], "previous": a[4]})
			_schedule(info, _emit_cue_changed.bind(info))
		"/adaptive/transition":
			info.merge({"phase": a[3], "from_cue": a[4], "to_cue": a[5]})
			_schedule(info, _emit_transition.bind(info))
		"/adaptive/stinger_played":
			info.merge({"stinger": a[3]})
			_schedule(info, _emit_stinger_played.bind(info))


func _emit_beat(info: Dictionary) -> void:
	current_cue = info["cue"]
	beat.emit(info["bar_index"], info["beat_in_bar"], info)


func _emit_bar(info: Dictionary) -> void:
	bar.emit(info["bar_index"], info)


func _emit_cue_changed(info: Dictionary) -> void:
	current_cue = info["cue"]
	cue_changed.emit(info["cue"], info["previous"], info)


func _emit_transition(info: Dictionary) -> void:
	transition.emit(info["phase"], info["from_cue"], info["to_cue"], info)


func _emit_stinger_played(info: Dictionary) -> void:
	stinger_played.emit(info["stinger"], info)


func _schedule(info: Dictionary, emit_it: Callable) -> void:
	if dispatch_timing == DispatchTiming.ON_ARRIVAL:
		emit_it.call()
	else:
		_due.append([info["frame"], info["server_time"], emit_it])


## The server time (seconds) of what is heard now: from the stream player when it plays the stream, else
## from the ping clock sync minus Godot's output latency.
func heard_server_time() -> float:
	if stream_player != null and stream_player.is_streaming() and not welcome.is_empty():
		return stream_player.heard_frame() / float(welcome["sample_rate_hz"])
	return now() + offset_seconds - AudioServer.get_output_latency() - extra_latency_seconds


func _dispatch_due() -> void:
	if _due.is_empty():
		return
	var heard := heard_server_time()
	var still: Array = []
	for item in _due:
		if item[1] <= heard:
			item[2].call()
		else:
			still.append(item)
	_due = still


func _exit_tree() -> void:
	if not welcome.is_empty():
		_send("/adaptive/goodbye", "", [])  # the server forgets this client at once
	_udp.close()
