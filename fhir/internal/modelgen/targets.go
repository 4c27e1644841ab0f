package main

import (
	"fmt"
	"sort"
	"strings"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// referenceMsg is the proto message of the FHIR Reference data type.
const referenceMsg protoreflect.FullName = "google.fhir.r4.core.Reference"

// anyTarget are the valid_reference_type values that allow every resource.
var anyTarget = map[string]bool{"Resource": true, "Any": true}

// addTargets records on each Reference element of m the resource types it
// may refer to, read from the valid_reference_type field option of the
// google/fhir R4 core protos. The resources are the fields of the
// ContainedResource oneof; the walk follows each resource's fields in
// parallel with the model: a field's JSON name is the element name, a
// backbone element or data type is a message, a choice type a message marked
// is_choice_type whose oneof fields are the types. Elements that may refer
// to any resource get no targets.
func addTargets(m *Model) error {
	w := &targetWalk{m: m, seen: map[string]bool{}, targets: map[string][]string{}, refs: map[string]bool{}}
	oneof := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource")
	if oneof == nil {
		return fmt.Errorf("ContainedResource has no oneof_resource")
	}
	found := map[string]bool{}
	for i := 0; i < oneof.Fields().Len(); i++ {
		md := oneof.Fields().Get(i).Message()
		name := string(md.Name())
		if m.Types[name] == nil {
			continue // a resource our model does not accept
		}
		found[name] = true
		if err := w.walk(name, md); err != nil {
			return err
		}
	}
	for _, r := range m.Resources {
		if !found[r] {
			return fmt.Errorf("resource %s is not in the R4 ContainedResource proto", r)
		}
	}
	// Every Reference element of a type reached from a resource must have
	// met its proto field.
	var missed []string
	for typ := range w.seen {
		for name, e := range m.Types[typ] {
			if e.Type == "Reference" && !w.refs[typ+"."+name] {
				missed = append(missed, typ+"."+name)
			}
		}
	}
	if len(missed) > 0 {
		sort.Strings(missed)
		return fmt.Errorf("Reference elements without a proto field: %v", missed)
	}
	for key, t := range w.targets {
		typ, name, _ := strings.Cut(key, ".")
		e := m.Types[typ][name]
		e.Targets = t
		m.Types[typ][name] = e
	}
	return nil
}

type targetWalk struct {
	m       *Model
	seen    map[string]bool     // model types walked
	targets map[string][]string // "Type.element" → allowed resource types
	refs    map[string]bool     // "Type.element" of the Reference elements seen
}

// walk matches the fields of message md with the elements of model type typ.
func (w *targetWalk) walk(typ string, md protoreflect.MessageDescriptor) error {
	if w.seen[typ] {
		return nil
	}
	w.seen[typ] = true
	elems := w.m.Types[typ]
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() == nil {
			continue
		}
		name := f.JSONName()
		fm := f.Message()
		if isChoice, _ := proto.GetExtension(fm.Options(), apb.E_IsChoiceType).(bool); isChoice {
			types := fm.Fields()
			for j := 0; j < types.Len(); j++ {
				if err := w.field(typ, elems, name+capitalise(types.Get(j).JSONName()), types.Get(j)); err != nil {
					return err
				}
			}
			continue
		}
		if err := w.field(typ, elems, name, f); err != nil {
			return err
		}
	}
	return nil
}

// field handles proto field f, element name of model type typ.
func (w *targetWalk) field(typ string, elems map[string]Element, name string, f protoreflect.FieldDescriptor) error {
	e, ok := elems[name]
	if !ok && name == "resourceType" && f.Message().FullName() != referenceMsg {
		// build drops every resourceType property, also the code element
		// ExampleScenario.instance.resourceType.
		return nil
	}
	if !ok {
		return fmt.Errorf("proto field %s: no element %s.%s in the model", f.FullName(), typ, name)
	}
	fm := f.Message()
	if fm.FullName() == referenceMsg {
		if e.Type != "Reference" {
			return fmt.Errorf("%s.%s: proto Reference, model type %s", typ, name, e.Type)
		}
		w.refs[typ+"."+name] = true
		valid, _ := proto.GetExtension(f.Options(), apb.E_ValidReferenceType).([]string)
		var t []string
		for _, v := range valid {
			if anyTarget[v] {
				t = nil
				break
			}
			t = append(t, v)
		}
		key := typ + "." + name
		if old, ok := w.targets[key]; ok && strings.Join(old, ",") != strings.Join(t, ",") {
			return fmt.Errorf("%s: conflicting targets %v and %v", key, old, t)
		}
		if t != nil {
			for _, r := range t {
				if _, ok := w.m.Types[r]; !ok || !contains(w.m.Resources, r) {
					return fmt.Errorf("%s: target %s is not a resource of the model", key, r)
				}
			}
			w.targets[key] = t
		}
		return nil
	}
	if _, complex := w.m.Types[e.Type]; !complex || e.Type == resourceRef {
		return nil // primitives, code enums, resources
	}
	return w.walk(e.Type, fm)
}

func contains(sorted []string, s string) bool {
	i := sort.SearchStrings(sorted, s)
	return i < len(sorted) && sorted[i] == s
}
