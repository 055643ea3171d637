public enum UVPlaceholder {}
