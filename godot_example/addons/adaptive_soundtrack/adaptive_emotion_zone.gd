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


func _ready() -> void:
	body_entered.connect(_on_body_entered)
	body_exited.connect(_on_body_exited)


func _on_body_entered(body: Node) -> void:
	if body.is_in_group(player_group):
		_inside += 1
		if _inside == 1:
			var soundtrack = get_node(soundtrack_path)
			soundtrack.enter_zone(self)


func _on_body_exited(body: Node) -> void:
	if body.is_in_group(player_group) and _inside > 0:
		_inside -= 1
		if _inside == 0:
			var soundtrack = get_node(soundtrack_path)
			soundtrack.exit_zone(self)
