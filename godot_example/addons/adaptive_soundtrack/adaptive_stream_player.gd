class_name AdaptiveStreamPlayer
extends AudioStreamPlayer
## Plays the server's plain TCP audio stream (docs/protocol.md, "The audio stream") through an
## AudioStreamGenerator: blocks of a 32-byte little-endian header (magic "ADA1", sequence u32,
## first_frame u64, n_frames u32, channels u16, sample_format u16, sample_rate_hz u32, reserved u32)
## followed by interleaved PCM. The generator runs at the session's rate (Godot resamples to the output);
## playback starts once target_latency_seconds are buffered. Underruns play silence and are counted by
## Godot (underruns()). After a hitch (a long frame, a stalled network), more than twice the target may be
## buffered: the oldest frames are skipped back to the target (skipped_frames), as the Unity player does,
## so the delay does not grow. A lost connection is retried with exponential backoff (0.25 s doubling to
## 8 s). It plays while the game is paused (process_mode ALWAYS, set in _init).

@export var soundtrack_path: NodePath
@export_range(0.02, 0.5) var target_latency_seconds := 0.1
@export var buffer_seconds := 0.5

var blocks := 0
var sequence_gaps := 0
var dropped_frames := 0  ## frames dropped because the generator stayed full
var skipped_frames := 0  ## frames skipped to get back to the target latency after a hitch
var reconnects := 0  ## connection attempts after the first

const RECONNECT_FIRST_SECONDS := 0.25
const RECONNECT_MAX_SECONDS := 8.0

var _soundtrack = null  # the AdaptiveSoundtrack
var _tcp := StreamPeerTCP.new()
var _bytes := PackedByteArray()
var _pending := PackedVector2Array()  # frames waiting for room in the generator
var _last_sequence := -1
var _last_block_end_frame := -1  # session frame after the newest frame received
var _rate := 48000
var _capacity_frames := 0
var _playback: AudioStreamGeneratorPlayback
var _connected := false
var _reconnect_delay := RECONNECT_FIRST_SECONDS
var _reconnect_at := 0.0
var _token_sent := false  # the welcome's client_id went first on this connection


func _init() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS


func _ready() -> void:
	_soundtrack = get_node_or_null(soundtrack_path) if soundtrack_path != NodePath() else null
	if _soundtrack == null:
		_soundtrack = get_parent() if get_parent() is AdaptiveSoundtrack else null
	if _soundtrack == null:
		push_error("AdaptiveStreamPlayer: set soundtrack_path to the AdaptiveSoundtrack node")
		set_process(false)


func _connect(welcome: Dictionary) -> void:
	if welcome["audio_tcp_port"] == 0:
		push_error("AdaptiveStreamPlayer: the server has no TCP audio stream (audio_tcp_port = 0)")
		set_process(false)
		return
	_rate = welcome["sample_rate_hz"]
	var generator := AudioStreamGenerator.new()
	generator.mix_rate = _rate
	generator.buffer_length = buffer_seconds
	stream = generator
	_tcp.connect_to_host(_soundtrack.host, welcome["audio_tcp_port"])
	_soundtrack.stream_player = self
	_connected = true


func is_streaming() -> bool:
	return _playback != null


func underruns() -> int:
	return _playback.get_skips() if _playback != null else 0


## The session frame being heard now (Godot's "sync with audio" recipe: the end of what the mixer has
## taken, minus the output latency, plus the time since the last mix).
func heard_frame() -> float:
	if _playback == null:
		return -1.0
	var queued := _capacity_frames - _playback.get_frames_available()
	var mixed_end := _last_block_end_frame - _pending.size() - queued
	return mixed_end - (AudioServer.get_output_latency() - AudioServer.get_time_since_last_mix()) * _rate


func _process(_delta: float) -> void:
	if not _connected:
		if not _soundtrack.welcome.is_empty():
			_connect(_soundtrack.welcome)
		return
	_tcp.poll()
	if _tcp.get_status() == StreamPeerTCP.STATUS_CONNECTED:
		if not _token_sent:
			# A server with credentials streams nothing before the welcome's client_id and a newline.
			_tcp.put_data((str(_soundtrack.welcome.get("client_id", "")) + "\n").to_ascii_buffer())
			_token_sent = true
		var available := _tcp.get_available_bytes()
		if available > 0:
			var got: Array = _tcp.get_data(available)
			if got[0] == OK:
				_bytes.append_array(got[1])
		_parse_blocks()
		_reconnect_delay = RECONNECT_FIRST_SECONDS
	elif _tcp.get_status() in [StreamPeerTCP.STATUS_NONE, StreamPeerTCP.STATUS_ERROR]:
		var t := Time.get_ticks_usec() / 1e6
		if t >= _reconnect_at:  # exponential backoff: not every frame while the server is away
			_bytes = PackedByteArray()  # a block cut by the lost connection is not completed by the next
			_tcp.connect_to_host(_soundtrack.host, _soundtrack.welcome["audio_tcp_port"])
			_token_sent = false
			reconnects += 1
			_reconnect_at = t + _reconnect_delay
			_reconnect_delay = minf(_reconnect_delay * 2.0, RECONNECT_MAX_SECONDS)
	if _playback == null:
		if _pending.size() >= int(target_latency_seconds * _rate):
			play()
			_playback = get_stream_playback()
			_capacity_frames = _playback.get_frames_available()  # empty: its whole (power-of-two) size
	if _playback != null:
		# The generator holds at most the target; what waits beyond it stays in _pending, where a hitch's
		# excess can be skipped.
		var target_frames := int(target_latency_seconds * _rate)
		var queued := _capacity_frames - _playback.get_frames_available()
		var excess := _pending.size() + queued - 2 * target_frames
		if excess > 0:  # after a hitch: skip the oldest back to the target latency
			var skip := mini(_pending.size(), _pending.size() + queued - target_frames)
			skipped_frames += skip
			_pending = _pending.slice(skip)
		var n := mini(_pending.size(), mini(_playback.get_frames_available(), target_frames - queued))
		if n > 0:
			_playback.push_buffer(_pending.slice(0, n))
			_pending = _pending.slice(n)
	var limit := int(buffer_seconds * _rate)
	if _pending.size() > limit:  # the generator is not draining (paused?): keep the newest
		dropped_frames += _pending.size() - limit
		_pending = _pending.slice(_pending.size() - limit)


func _parse_blocks() -> void:
	while _bytes.size() >= 32:
		if not (_bytes[0] == 65 and _bytes[1] == 68 and _bytes[2] == 65 and _bytes[3] == 49):  # "ADA1"
			var next := _bytes.find(65, 1)
			_bytes = _bytes.slice(next if next > 0 else _bytes.size())  # resync on the magic
			continue
		var sequence := _bytes.decode_u32(4)
		var first_frame := _bytes.decode_u64(8)
		var n_frames := _bytes.decode_u32(16)
		var channels := _bytes.decode_u16(20)
		var sample_format := _bytes.decode_u16(22)
		if not sample_format in [1, 3] or channels < 1 or channels > 8 or _bytes.decode_u32(28) != 0:
			_bytes = _bytes.slice(1)  # not a header: the magic was inside PCM
			continue
		var bytes_per_sample := 2 if sample_format == 1 else 4
		var pcm_bytes := n_frames * channels * bytes_per_sample
		if _bytes.size() < 32 + pcm_bytes:
			return
		if _last_sequence >= 0 and sequence != (_last_sequence + 1) % 4294967296:
			sequence_gaps += 1
		_last_sequence = sequence
		blocks += 1
		var start := _pending.size()
		_pending.resize(start + n_frames)
		for i in range(n_frames):
			var at := 32 + i * channels * bytes_per_sample
			var left: float
			var right: float
			if sample_format == 1:
				left = _bytes.decode_s16(at) / 32767.0
				right = _bytes.decode_s16(at + 2) / 32767.0 if channels > 1 else left
			else:
				left = _bytes.decode_float(at)
				right = _bytes.decode_float(at + 4) if channels > 1 else left
			_pending[start + i] = Vector2(left, right)
		_last_block_end_frame = first_frame + n_frames
		_bytes = _bytes.slice(32 + pcm_bytes)


func _exit_tree() -> void:
	_tcp.disconnect_from_host()
