package mappings

// codeSystemRes is the CodeSystem resource of the local kap codes.
type codeSystemRes struct {
	base
	URL         string      `json:"url"`
	Version     string      `json:"version"`
	Name        string      `json:"name"`
	Title       string      `json:"title"`
	Status      string      `json:"status"`
	Publisher   string      `json:"publisher"`
	Description string      `json:"description"`
	CaseSens    bool        `json:"caseSensitive"`
	Content     string      `json:"content"`
	Count       int         `json:"count"`
	Concept     []csConcept `json:"concept"`
}

type csConcept struct {
	Code       string `json:"code"`
	Display    string `json:"display"`
	Definition string `json:"definition,omitempty"`
}

// CodeSystem is the kap CodeSystem resource (content complete): the concepts
// of the kap table and the local item codes of the instruments that have no
// standard item codes. id is the FHIR id the caller serves it under.
func (m *Mapper) CodeSystem(id string) (Resource, error) {
	cs := codeSystemRes{
		base:        base{ResourceType: "CodeSystem", ID: id},
		URL:         m.t.kapURL,
		Version:     "1",
		Name:        "KAP",
		Title:       "Ketamine-assisted psychotherapy local codes",
		Status:      "active",
		Publisher:   "kapfhir",
		Description: "Local codes for KAP concepts without a standard code; always sent next to any standard code.",
		CaseSens:    true,
		Content:     "complete",
	}
	for _, c := range m.t.concepts {
		cs.Concept = append(cs.Concept, csConcept{Code: c.Code, Display: c.Display, Definition: c.Definition})
	}
	for i := range m.t.instruments {
		in := &m.t.instruments[i]
		for n := 1; n <= in.LocalItems; n++ {
			c := m.t.localItem(in, n)
			cs.Concept = append(cs.Concept, csConcept{Code: c.Code, Display: c.Display})
		}
	}
	cs.Count = len(cs.Concept)
	return encode("CodeSystem", id, cs)
}
