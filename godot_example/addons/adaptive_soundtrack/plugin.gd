@tool
extends EditorPlugin
# The addon's nodes register themselves with `class_name` (AdaptiveSoundtrack, AdaptiveStreamPlayer,
# AdaptiveEmotionZone); enabling the plugin only makes the addon visible in Project Settings > Plugins.


func _enter_tree() -> void:
	pass


func _exit_tree() -> void:
	pass
