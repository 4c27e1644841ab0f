package seed

// Synthetic names: common given names with invented family names, so no
// generated person can be mistaken for a real one.
var (
	givenFemale = []string{"Ada", "Bea", "Cora", "Dina", "Edie", "Fern", "Gwen", "Hana", "Iris", "June", "Kit", "Lena", "Mara", "Nell", "Opal", "Pia", "Rue", "Sage", "Tess", "Vera"}
	givenMale   = []string{"Abe", "Bo", "Cal", "Dov", "Eli", "Finn", "Gus", "Hal", "Ike", "Jem", "Kai", "Lou", "Max", "Ned", "Otto", "Pip", "Rex", "Sol", "Theo", "Wes"}
	family      = []string{
		"Applewhistle", "Brambleton", "Cloudsley", "Dappleworth", "Emberfield", "Fernsby", "Glimmerton", "Hollowbrook",
		"Inkwell", "Juniperly", "Kettleby", "Lanternfoot", "Mossgrove", "Nettlecombe", "Oddleby", "Puddingstone",
		"Quillfeather", "Rookwhistle", "Saltmarsh", "Thistlewood", "Umbermoor", "Velvetleaf", "Wobblesworth", "Yarrowdale",
	}
	// intentions a client may bring to the preparation sessions.
	intentions = []string{
		"Reconnect with the people I love",
		"Find a kinder voice toward myself",
		"Understand where my numbness comes from",
		"Sleep through the night again",
		"Feel safe in my own body",
		"Let go of the need to drink to cope",
		"Return to work with energy",
		"Live with the pain without it ruling my days",
	}
)
