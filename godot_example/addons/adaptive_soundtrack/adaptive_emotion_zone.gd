class_name AdaptiveEmotionZone
extends Area3D
## While a body in the group `player_group` is inside, the scene state is this zone's emotion, intensity
## and location; nested zones: the highest priority wins. Needs the AdaptiveSoundtrack at `soundtrack_path`.

@export var soundtrack_path: NodePath
@export var emotion := "tense"
@export_range(0.0, 1.0) var intensity := 0.6
## Empty keeps the soundtrack's default location.
@export var location := ""
@export var priority := 0
@export var player_group := &"player"

var _inside := 0
var _soundtrack = null  # the AdaptiveSoundtrack this zone entered (so leaving, or being freed, exits it there)


func _ready() -> void:
	body_entered.connect(_on_body_entered)
	body_exited.connect(_on_body_exited)
	_find_soundtrack()  # says at once, not on the first entry, when soundtrack_path is wrong


## The AdaptiveSoundtrack at soundtrack_path, or null after a clear error naming this zone and the path.
func _find_soundtrack():
	var soundtrack = get_node_or_null(soundtrack_path) if not soundtrack_path.is_empty() else null
	if soundtrack == null or not soundtrack.has_method("enter_zone"):
		push_error("AdaptiveEmotionZone '%s': soundtrack_path '%s' does not lead to an AdaptiveSoundtrack node; set it in the Inspector" % [name, soundtrack_path])
		return null
	return soundtrack


func _on_body_entered(body: Node) -> void:
	if body.is_in_group(player_group):
		_inside += 1
		if _inside == 1:
			_soundtrack = _find_soundtrack()
			if _soundtrack != null:
				_soundtrack.enter_zone(self)


func _on_body_exited(body: Node) -> void:
	if body.is_in_group(player_group) and _inside > 0:
		_inside -= 1
		if _inside == 0:
			_leave()


## A zone removed from the tree (freed, or its level unloaded) while the player is inside stops playing.
func _exit_tree() -> void:
	_inside = 0
	_leave()


func _leave() -> void:
	if _soundtrack != null and is_instance_valid(_soundtrack):
		_soundtrack.exit_zone(self)
	_soundtrack = null
